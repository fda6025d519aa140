// Private derivatives' URLs, checked by nginx before it reads the stored object (njs); resize_sidecar/core/private.py
// makes them and the sidecar checks them again on a miss, with the same rules and the same answers.
//
//   $resize_private_refusal       empty when the URL may be served, else why not (the 403's text)
//   $resize_private_cache_control "private, max-age={seconds left}"
// Inputs: $resize_private_keys, the token keys (derived from SECRETS, space-separated, any one accepted), and
// $resize_private_expires, the query's expiry kept before the S3 locations clear the query.
import crypto from 'crypto';

// The one spelling of the query (core/private.py's _QUERY).
const QUERY = /^expires=([1-9][0-9]{0,11})&token=([0-9a-f]{32})$/;

// Every character is compared, so the time taken does not depend on where a wrong token first differs.
function same(a, b) {
    let diff = a.length ^ b.length;
    for (let i = 0; i < a.length && i < b.length; i++) {
        diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
    }
    return diff === 0;
}

function refusal(r) {
    const uri = r.variables.request_uri;
    const mark = uri.indexOf('?');
    const path = mark < 0 ? uri : uri.slice(0, mark);
    const found = QUERY.exec(mark < 0 ? '' : uri.slice(mark + 1));
    if (!found) {
        return 'a private URL needs ?expires={unix}&token={token}';
    }
    const expires = found[1];
    const keys = r.variables.resize_private_keys.split(' ');
    let valid = false;
    // The token is checked with every key (rotation) before the expiry is looked at: an expiry changed by hand is
    // a wrong token, not an expired URL.
    for (let i = 0; i < keys.length; i++) {
        const mac = crypto.createHmac('sha256', keys[i]).update(`${expires}\n${path}`).digest('hex');
        valid = same(mac.slice(0, 32), found[2]) || valid;
    }
    if (!valid) {
        return "the private URL's token does not match";
    }
    if (parseInt(expires, 10) <= Date.now() / 1000) {
        return 'the private URL has expired';
    }
    return '';
}

function cacheControl(r) {
    const left = parseInt(r.variables.resize_private_expires, 10) - Math.floor(Date.now() / 1000);
    return `private, max-age=${Math.max(0, left || 0)}`;
}

export default {refusal, cacheControl};
