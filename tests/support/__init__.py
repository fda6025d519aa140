"""What the tests share: servers, fault injection, pictures and projects made on the spot.

Importing any of it sets no environment variable, starts no process and writes no file of its own (the program's
modules it imports do what they do when imported).
"""
