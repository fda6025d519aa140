// Derivative URLs, checked by nginx on every request (njs): storage keys carry no signature, so nginx verifies it
// before it reads anything and reads the derivative at its storage key. resize_sidecar/core/signing.py is the
// contract (parse_path, verify, StoredDerivative.storage_key); the sidecar checks misses again with it.
//
//   $resize_derivative   the derivative's storage key, {prefix}{key}/{spec}.{fmt}, the key not percent-encoded; or
//                        empty when the URL does not verify: not in its one canonical spelling, or signed with none
//                        of the keys
// Inputs, set in the location: $resize_derivatives, the URL prefix ({media_url}{prefix}); $resize_derivatives_key,
// the storage prefix ({prefix}); $resize_signing_keys, the keys in hex, space-separated, any one accepted;
// $resize_signed_keys, "signed" where storage keys keep the signature ({spec}-{signature}.{fmt}: redirect mode).
// $resize_auto_format is the format an .auto URL's Accept header chooses (a map).
import crypto from 'crypto';

// {spec}-{signature}.{format}: the spec is checked by its signature, which only a canonical spec can have.
const NAME = /^(.+)-([0-9a-f]{32})\.([a-z0-9]+)$/;

// Python's urllib.parse.quote(key, safe="/") writes every byte but A-Z a-z 0-9 _ . - ~ and '/' as %XX, upper-case:
// anything else in the path, or one of those bytes written as %XX, is another spelling of the key.
const ENCODED = /^(?:[A-Za-z0-9_.~\/-]|%[0-9A-F]{2})+$/;
const NEEDLESSLY_ENCODED = /%(?:2[DEF]|3[0-9]|4[1-9A-F]|5[0-9AF]|6[1-9A-F]|7[0-9AE])/;

// Every character is compared, so the time taken does not depend on where a wrong signature first differs.
function same(a, b) {
    let diff = a.length ^ b.length;
    for (let i = 0; i < a.length && i < b.length; i++) {
        diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
    }
    return diff === 0;
}

function derivative(r) {
    const prefix = r.variables.resize_derivatives;
    const uri = r.variables.request_uri;
    const mark = uri.indexOf('?');
    const path = mark < 0 ? uri : uri.slice(0, mark);
    if (!prefix || !path.startsWith(prefix)) {
        return '';
    }
    const rest = path.slice(prefix.length);
    const slash = rest.lastIndexOf('/');
    const found = NAME.exec(rest.slice(slash + 1));
    if (slash < 1 || !found) {
        return '';
    }
    const encoded = rest.slice(0, slash);
    if (!ENCODED.test(encoded) || NEEDLESSLY_ENCODED.test(encoded)) {
        return '';
    }
    let key;
    try {
        key = decodeURIComponent(encoded);
    } catch (e) {
        return '';  // not UTF-8
    }
    const spec = found[1];
    const signature = found[2];
    const signedFormat = found[3];
    const format = signedFormat === 'auto' ? r.variables.resize_auto_format : signedFormat;
    if (!format) {
        return '';
    }
    const keys = r.variables.resize_signing_keys.split(' ');
    let valid = false;
    for (let i = 0; i < keys.length; i++) {
        const mac = crypto.createHmac('sha256', Buffer.from(keys[i], 'hex'))
            .update(`${key}/${spec}.${signedFormat}`).digest('hex');
        valid = same(mac.slice(0, 32), signature) || valid;
    }
    if (!valid) {
        return '';
    }
    const name = r.variables.resize_signed_keys ? `${spec}-${signature}` : spec;
    return `${r.variables.resize_derivatives_key}${key}/${name}.${format}`;
}

export default {derivative};
