#!/usr/bin/env node
// s3rver-wrap.js: npm's s3rver 3.7.1 as the second, independent S3 store of
// the tests of `backend s3`, made to keep conditional writes atomic.
//
//   node s3rver-wrap.js --listen 127.0.0.1:0 --port-file PATH --dir DIR
//        [--bucket NAME ...] [--access-key AK --secret-key SK]
//
// s3rver (installed by scripts/install-deps under
// /usr/local/lib/alpcrund-test, or the npm prefix named by
// $ALPCRUND_S3RVER_DIR) stores objects in DIR. It ignores If-None-Match and
// If-Match on writes and checks no SigV4 signature (only the access key, the
// x-amz-content-sha256 header and the 15-minute skew). The handler in front
// of its Koa app, path-style only:
//   - GET and HEAD of an object take the key's lock too: s3rver writes an
//     object's file in place, and a read beside the write could see part of
//     it (real stores show a PUT whole or not at all);
//   - PUT object, CompleteMultipartUpload and DELETE object take a per-key
//     lock (a promise chain) held until the response has gone (or the
//     client, even while it waited for the lock); under it
//     If-None-Match: * (412 PreconditionFailed when the key exists, another
//     value 501 NotImplemented) and If-Match (412 when the ETag differs, 404
//     NoSuchKey when the key is missing) are checked against the stored
//     object's ETag, and the request goes on to s3rver only when they hold;
//   - UploadPart and CompleteMultipartUpload of an unknown upload answer 404
//     NoSuchUpload (s3rver would create or fail with a 500);
//   - AbortMultipartUpload (DELETE ?uploadId=) and ListMultipartUploads
//     (GET /bucket?uploads) are answered here (s3rver has neither);
//   - ListObjectsV2's continuation tokens are DES-encrypted by s3rver, a
//     cipher OpenSSL 3 no longer offers (a truncated listing answered 500):
//     'des' is given to OpenSSL as des-ede3-cbc with the key three times,
//     the same cipher.
// The port is written to PATH (a temporary file renamed into place) once
// listening; SIGTERM or SIGINT stops it.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');

const PREFIX = process.env.ALPCRUND_S3RVER_DIR || '/usr/local/lib/alpcrund-test';
const MODULES = path.join(PREFIX, 'node_modules');

for (const name of ['createCipheriv', 'createDecipheriv']) {
  const orig = crypto[name];
  crypto[name] = (alg, key, iv, options) => (alg === 'des'
    ? orig('des-ede3-cbc', Buffer.concat([key, key, key]), iv, options)
    : orig(alg, key, iv, options));
}

function usage(msg) {
  process.stderr.write(`s3rver-wrap: ${msg}\n` +
    'usage: s3rver-wrap.js --listen HOST:PORT --port-file PATH --dir DIR ' +
    '[--bucket NAME ...] [--access-key AK --secret-key SK]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const a = { listen: '127.0.0.1:0', buckets: [] };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--listen': a.listen = v; i++; break;
      case '--port-file': a.portFile = v; i++; break;
      case '--dir': a.dir = v; i++; break;
      case '--bucket': a.buckets.push(v); i++; break;
      case '--access-key': a.accessKey = v; i++; break;
      case '--secret-key': a.secretKey = v; i++; break;
      default: usage(`unknown argument ${argv[i]}`);
    }
    if (v === undefined) usage(`${argv[i]} needs a value`);
  }
  if (!a.dir) usage('--dir is required');
  if ((a.accessKey === undefined) !== (a.secretKey === undefined)) {
    usage('--access-key and --secret-key go together');
  }
  return a;
}

function xmlEscape(s) {
  return String(s).replace(/[&<>"']/g, c => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;',
  }[c]));
}

const XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';
let requestSeq = 0;

// Answer an S3 error after the request body has been read (so that the
// connection stays usable).
function s3error(req, res, status, code, message, extra = {}) {
  const fields = Object.entries(extra)
    .map(([k, v]) => `<${k}>${xmlEscape(v)}</${k}>`).join('');
  const body = '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message>${fields}` +
    `<RequestId>W${++requestSeq}</RequestId></Error>`;
  answer(req, res, status, { 'Content-Type': 'application/xml' }, body);
}

function answer(req, res, status, headers, body) {
  const send = () => {
    const buf = Buffer.from(req.method === 'HEAD' ? '' : body || '');
    res.writeHead(status, { ...headers, 'Content-Length': buf.length });
    res.end(buf);
  };
  if (req.readableEnded) send();
  else {
    req.on('end', send);
    req.resume();
  }
}

function isoDate(d) {
  return d.toISOString();
}

// One promise chain per key: lock(k) resolves to a release function once
// every earlier holder of k has released.
const locks = new Map();
function lock(k) {
  const prev = locks.get(k) || Promise.resolve();
  let release;
  const mine = new Promise(r => { release = r; });
  const chain = prev.then(() => mine);
  locks.set(k, chain);
  return prev.then(() => {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      release();
      if (locks.get(k) === chain) locks.delete(k);
    };
  });
}

function etagMatches(header, etag) {
  if (header.trim() === '*') return true;
  const strip = v => v.trim().replace(/^W\//, '').replace(/"/g, '');
  return header.split(',').some(p => strip(p) === strip(etag));
}

// s3rver writes an object's file in place and answers before the file is
// flushed: a read could see part of it, and an upload cut short (a client
// killed mid-body) would leave part of it behind. Real stores show a PUT
// whole or not at all: here the object goes to a file of its own, renamed
// over the old one once written and closed, and is dropped if the body
// ends early.
let tmpSeq = 0;
function atomicPuts(FilesystemStore) {
  FilesystemStore.prototype.putObject = async function putObject(object) {
    const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
    await fs.promises.mkdir(path.dirname(objectPath), { recursive: true });
    const tmp = `${objectPath}.part-${process.pid}-${++tmpSeq}`;
    const md5 = crypto.createHash('md5');
    let size = 0;
    try {
      await new Promise((resolve, reject) => {
        const ws = fs.createWriteStream(tmp);
        ws.on('error', reject);
        ws.on('close', resolve);
        const src = object.content;
        if (Buffer.isBuffer(src)) {
          md5.update(src);
          size = src.length;
          ws.end(src);
          return;
        }
        src.on('data', c => { md5.update(c); size += c.length; });
        src.on('error', e => { ws.destroy(); reject(e); });
        src.on('aborted', () => { ws.destroy(); reject(new Error('upload cut short')); });
        src.on('close', () => {
          if (!src.readableEnded) {
            ws.destroy();
            reject(new Error('upload cut short'));
          }
        });
        src.pipe(ws);
      });
    } catch (e) {
      await fs.promises.rm(tmp, { force: true });
      throw e;
    }
    const digest = md5.digest('hex');
    await fs.promises.rename(tmp, objectPath);
    await this.putMetadata(object.bucket, object.key, object.metadata, digest);
    return { size, md5: digest };
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let S3rver, AWSAccount;
  try {
    S3rver = require(path.join(MODULES, 's3rver'));
    AWSAccount = require(path.join(MODULES, 's3rver', 'lib', 'models', 'account'));
  } catch (e) {
    process.stderr.write(`s3rver-wrap: s3rver is not installed under ${MODULES} ` +
      `(scripts/install-deps, or set ALPCRUND_S3RVER_DIR): ${e.message}\n`);
    process.exit(3);
  }
  atomicPuts(require(path.join(MODULES, 's3rver', 'lib', 'stores', 'filesystem')));
  if (args.accessKey !== undefined) {
    AWSAccount.DUMMY_ACCOUNT.createKeyPair(args.accessKey, args.secretKey);
  }
  fs.mkdirSync(args.dir, { recursive: true });
  const app = new S3rver({
    silent: true,
    directory: args.dir,
    vhostBuckets: false,
    configureBuckets: args.buckets.map(name => ({ name })),
  });
  await app.configureBuckets();
  const store = app.store;
  const inner = app.callback();

  const uploadsDir = bucket => store.getResourcePath(bucket, undefined, 'uploads');
  async function uploadKey(bucket, uploadId) {
    if (!uploadId || uploadId.includes('/') || uploadId.startsWith('.')) return null;
    try {
      return (await fs.promises.readFile(
        path.join(uploadsDir(bucket), uploadId, 'key'))).toString();
    } catch (e) {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return null;
      throw e;
    }
  }
  async function currentEtag(bucket, key) {
    try {
      return (await store.getMetadata(bucket, key)).etag;
    } catch (e) {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return null;
      throw e;
    }
  }

  // The access-key check s3rver makes, for the answers given here.
  function authProblem(req) {
    const auth = req.headers.authorization;
    if (!auth) return null;
    const m = /Credential=([^/,\s]+)/.exec(auth);
    if (m && !AWSAccount.registry.has(m[1])) {
      return [403, 'InvalidAccessKeyId',
        'The AWS Access Key Id you provided does not exist in our records.'];
    }
    if (/^AWS4-HMAC-SHA256/.test(auth) && !('x-amz-content-sha256' in req.headers)) {
      return [400, 'InvalidRequest',
        'Missing required header for this request: x-amz-content-sha256'];
    }
    return null;
  }

  // The rule of a conditional write: null (go on) or [status, code, message].
  function precondition(req, etag) {
    const ifMatch = req.headers['if-match'];
    const ifNone = req.headers['if-none-match'];
    if (ifNone !== undefined && ifNone.trim() !== '*') {
      return [501, 'NotImplemented',
        'A header you provided implies functionality that is not implemented'];
    }
    if (ifMatch !== undefined) {
      if (etag === null) {
        return [404, 'NoSuchKey', 'The specified key does not exist.'];
      }
      if (!etagMatches(ifMatch, etag)) {
        return [412, 'PreconditionFailed',
          'At least one of the pre-conditions you specified did not hold'];
      }
    }
    if (ifNone !== undefined && etag !== null) {
      return [412, 'PreconditionFailed',
        'At least one of the pre-conditions you specified did not hold'];
    }
    return null;
  }

  async function listUploads(req, res, bucket, q) {
    const prefix = q.get('prefix') || '';
    const km = q.get('key-marker') || '';
    const um = q.get('upload-id-marker') || '';
    const max = Math.min(Number(q.get('max-uploads') || 1000), 1000);
    let ids = [];
    try {
      ids = await fs.promises.readdir(uploadsDir(bucket));
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
    }
    let ups = [];
    for (const id of ids) {
      const key = await uploadKey(bucket, id);
      if (key === null || !key.startsWith(prefix)) continue;
      const st = await fs.promises.stat(path.join(uploadsDir(bucket), id, 'key'));
      ups.push({ key, id, initiated: st.mtime });
    }
    ups.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (km) {
      ups = ups.filter(u => (um ? u.key > km || (u.key === km && u.id > um) : u.key > km));
    }
    const truncated = ups.length > max;
    ups = ups.slice(0, max);
    let inner = `<Bucket>${xmlEscape(bucket)}</Bucket><KeyMarker>${xmlEscape(km)}</KeyMarker>` +
      `<UploadIdMarker>${xmlEscape(um)}</UploadIdMarker><Prefix>${xmlEscape(prefix)}</Prefix>` +
      `<MaxUploads>${max}</MaxUploads><IsTruncated>${truncated}</IsTruncated>`;
    if (truncated && ups.length) {
      const last = ups[ups.length - 1];
      inner += `<NextKeyMarker>${xmlEscape(last.key)}</NextKeyMarker>` +
        `<NextUploadIdMarker>${xmlEscape(last.id)}</NextUploadIdMarker>`;
    }
    for (const u of ups) {
      inner += `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${xmlEscape(u.id)}</UploadId>` +
        `<StorageClass>STANDARD</StorageClass><Initiated>${isoDate(u.initiated)}</Initiated></Upload>`;
    }
    answer(req, res, 200, { 'Content-Type': 'application/xml' },
      `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="${XMLNS}">` +
      `${inner}</ListMultipartUploadsResult>`);
  }

  async function front(req, res) {
    const u = new URL(req.url, 'http://s3rver.invalid');
    const raw = u.pathname.slice(1);
    const slash = raw.indexOf('/');
    const bucket = decodeURIComponent(slash < 0 ? raw : raw.slice(0, slash));
    const key = slash < 0 || slash === raw.length - 1 ? null : decodeURIComponent(raw.slice(slash + 1));
    const q = u.searchParams;
    const method = req.method;
    if (!bucket) return inner(req, res);
    const bucketExists = !!(await store.getBucket(bucket));
    if (!bucketExists) return inner(req, res);     // s3rver's NoSuchBucket

    const problem = authProblem(req);
    const fail = (status, code, message, extra) => s3error(req, res, status, code, message, extra);

    if (key === null) {
      if (method === 'GET' && q.has('uploads')) {
        if (problem) return fail(...problem);
        return listUploads(req, res, bucket, q);
      }
      return inner(req, res);
    }

    const uploadId = q.get('uploadId');
    if (uploadId !== null && method === 'DELETE') {
      if (problem) return fail(...problem);
      if ((await uploadKey(bucket, uploadId)) !== key) {
        return fail(404, 'NoSuchUpload', 'The specified upload does not exist.', { UploadId: uploadId });
      }
      await fs.promises.rm(path.join(uploadsDir(bucket), uploadId), { recursive: true, force: true });
      return answer(req, res, 204, {}, '');
    }
    if (uploadId !== null && method === 'PUT') {
      if (!problem && (await uploadKey(bucket, uploadId)) !== key) {
        return fail(404, 'NoSuchUpload', 'The specified upload does not exist.', { UploadId: uploadId });
      }
      return inner(req, res);
    }

    const plain = [...q.keys()].every(k => k.toLowerCase().startsWith('x-amz-'));
    const isPut = method === 'PUT' && plain;
    const isDelete = method === 'DELETE' && plain;
    const isComplete = method === 'POST' && uploadId !== null;
    // s3rver writes an object's file in place: a read beside a write of
    // the key could see it half written. Reads take the key's lock too.
    const isRead = (method === 'GET' || method === 'HEAD') && plain && key !== null;
    if (isRead) {
      const release = await lock(`${bucket}\0${key}`);
      res.once('finish', release);
      res.once('close', release);
      if (req.socket.destroyed) {
        release();
        return;
      }
      return inner(req, res);
    }
    if (!isPut && !isDelete && !isComplete) return inner(req, res);
    if (problem) return fail(...problem);

    const release = await lock(`${bucket}\0${key}`);
    res.once('finish', release);
    res.once('close', release);
    // A client gone while it waited for the lock: its 'close' came before
    // the listener, and nothing would release the key again.
    if (req.socket.destroyed) {
      release();
      return;
    }
    try {
      if (isComplete && (await uploadKey(bucket, uploadId)) !== key) {
        return fail(404, 'NoSuchUpload', 'The specified upload does not exist.', { UploadId: uploadId });
      }
      const etag = await currentEtag(bucket, key);
      let err;
      if (isDelete) {
        err = req.headers['if-match'] === undefined ? null
          : etag === null ? [404, 'NoSuchKey', 'The specified key does not exist.']
            : !etagMatches(req.headers['if-match'], etag)
              ? [412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold']
              : null;
      } else {
        err = precondition(req, etag);
      }
      if (err) return fail(err[0], err[1], err[2], { Key: key });
      return inner(req, res);
    } catch (e) {
      release();
      throw e;
    }
  }

  const server = http.createServer((req, res) => {
    front(req, res).catch(e => {
      process.stderr.write(`s3rver-wrap: ${req.method} ${req.url}: ${e.stack || e}\n`);
      if (!res.headersSent) s3error(req, res, 500, 'InternalError', String(e.message || e));
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 120000;

  const colon = args.listen.lastIndexOf(':');
  const host = args.listen.slice(0, colon).replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = Number(args.listen.slice(colon + 1));
  server.listen(port, host, () => {
    const bound = server.address().port;
    if (args.portFile) {
      const tmp = `${args.portFile}.tmp.${process.pid}`;
      fs.writeFileSync(tmp, `${bound}\n`);
      fs.renameSync(tmp, args.portFile);
    }
    process.stderr.write(`s3rver-wrap: listening on http://${host}:${bound} (s3rver in ${args.dir})\n`);
  });
  const stop = () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch(e => {
  process.stderr.write(`s3rver-wrap: ${e.stack || e}\n`);
  process.exit(1);
});
