"""What the tests share: servers, fault injection, pictures and projects made on the spot.

Importing any of it changes nothing: no environment, no process, no file.
"""
