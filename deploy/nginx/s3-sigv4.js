// AWS Signature Version 4 for nginx's requests to S3 (njs), so derivatives can stay in a private bucket.
//
// nginx asks for three variables per request; all are computed from the same cached clock ($msec), so the
// date in the signature and in the x-amz-date header always agree:
//   $s3_uri            the object's path, /{bucket}/{prefix}{key}, encoded exactly as it is signed
//   $s3_date           x-amz-date
//   $s3_authorization  the Authorization header
//   $s3_security_token x-amz-security-token (empty, and so not sent, without a session token)
// Per-location inputs come as nginx variables: $s3_bucket_path ("/bucket/prefix"), $s3_strip (the public
// prefix to replace, e.g. "/media/"), $s3_host, $s3_region and $s3_credentials_file.
//
// Credentials: the file named by $s3_credentials_file when it is set (JSON with AccessKeyId, SecretAccessKey and
// optionally SessionToken, the shape `aws sts assume-role` and instance metadata print), read on every request
// so that rotated credentials apply without a reload; else AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN from nginx's environment (declared with `env` in the main context).
import crypto from 'crypto';
import fs from 'fs';

const EMPTY_PAYLOAD = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

// S3's URI encoding: every byte but A-Z a-z 0-9 - . _ ~ is percent-encoded, '/' between segments kept.
// encodeURIComponent leaves !'()* alone, so those are encoded here.
function encodeSegment(segment) {
    return encodeURIComponent(segment).replace(/[!'()*]/g,
        (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

function uri(r) {
    const strip = r.variables.s3_strip;
    // r.uri is decoded and normalised by nginx; re-encoding it gives one spelling per key, whatever the client sent.
    const key = r.uri.startsWith(strip) ? r.uri.slice(strip.length) : r.uri;
    try {
        return r.variables.s3_bucket_path + key.split('/').map(encodeSegment).join('/');
    } catch (e) {
        // Not valid UTF-8: no such object; S3 will say so and nginx falls back to the sidecar, which refuses it.
        return r.variables.s3_bucket_path + '%00';
    }
}

function amzDate(r) {
    const iso = new Date(parseFloat(r.variables.msec) * 1000).toISOString();
    return iso.replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

function credentials(r) {
    const file = r.variables.s3_credentials_file;
    if (file) {
        const data = JSON.parse(fs.readFileSync(file));
        return {id: data.AccessKeyId, secret: data.SecretAccessKey, token: data.SessionToken || ''};
    }
    return {
        id: process.env.AWS_ACCESS_KEY_ID || '',
        secret: process.env.AWS_SECRET_ACCESS_KEY || '',
        token: process.env.AWS_SESSION_TOKEN || '',
    };
}

function hmac(key, text) {
    return crypto.createHmac('sha256', key).update(text).digest();
}

function authorization(r) {
    let creds;
    try {
        creds = credentials(r);
    } catch (e) {
        r.error(`S3 credentials could not be read: ${e}`);
        return '';
    }
    const date = amzDate(r);
    const day = date.slice(0, 8);
    const region = r.variables.s3_region;
    const scope = `${day}/${region}/s3/aws4_request`;
    let headers = `host:${r.variables.s3_host}\nx-amz-content-sha256:${EMPTY_PAYLOAD}\nx-amz-date:${date}\n`;
    let signed = 'host;x-amz-content-sha256;x-amz-date';
    if (creds.token) {
        headers += `x-amz-security-token:${creds.token}\n`;
        signed += ';x-amz-security-token';
    }
    // Always GET: the rendered configuration sets proxy_method GET (a cache turns HEAD into GET anyway).
    const canonical = ['GET', uri(r), '', headers, signed, EMPTY_PAYLOAD].join('\n');
    const digest = crypto.createHash('sha256').update(canonical).digest('hex');
    const toSign = ['AWS4-HMAC-SHA256', date, scope, digest].join('\n');
    const key = hmac(hmac(hmac(hmac('AWS4' + creds.secret, day), region), 's3'), 'aws4_request');
    const signature = crypto.createHmac('sha256', key).update(toSign).digest('hex');
    return `AWS4-HMAC-SHA256 Credential=${creds.id}/${scope}, SignedHeaders=${signed}, Signature=${signature}`;
}

function securityToken(r) {
    try {
        return credentials(r).token;
    } catch (e) {
        return '';
    }
}

export default {uri, authorization, securityToken, date: amzDate};
