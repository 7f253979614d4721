#!/usr/bin/env node
// An independent verifier of Sigstore bundles for zeroimage's tests: @sigstore/verify, offline,
// with one public key as the only trust material (no transparency log, no timestamps).
//
//   node verify.js BUNDLE.json PUBLIC-KEY.pem [--artifact FILE] [--digest sha256:HEX]
//
// --artifact: the signed bytes, needed by a message-signature bundle (the verifier does not check
//   its messageDigest against them; this script does).
// --digest: the artifact the bundle must speak of: a subject of the DSSE envelope's in-toto
//   statement, or the digest of the --artifact bytes. @sigstore/verify checks signatures only.
//
// Exit 0 with "OK <content> <payloadType or -> <predicateType or ->", 1 with the verifier's
// message when the bundle does not verify, 2 on bad usage.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const { bundleFromJSON, isBundleWithDsseEnvelope } = require('@sigstore/bundle');
const { TrustedRoot, PublicKeyDetails } = require('@sigstore/protobuf-specs');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

function usage(message) {
  process.stderr.write(`verify.js: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { positional: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--artifact' || argv[i] === '--digest') {
      if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`);
      args[argv[i].slice(2)] = argv[++i];
    } else {
      args.positional.push(argv[i]);
    }
  }
  if (args.positional.length !== 2) usage('expected BUNDLE and PUBLIC-KEY');
  return args;
}

function fail(message) {
  process.stdout.write(`FAIL ${message}\n`);
  process.exit(1);
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const [bundlePath, keyPath] = args.positional;

  const publicKey = crypto.createPublicKey(fs.readFileSync(keyPath));
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  // sigstore-go's and cosign's hint: base64(sha256(DER SubjectPublicKeyInfo)).
  const hint = crypto.createHash('sha256').update(spki).digest('base64');
  const root = TrustedRoot.fromJSON({
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    certificateAuthorities: [],
    ctlogs: [],
    timestampAuthorities: [],
  });
  const trust = toTrustMaterial(root, {
    [hint]: { rawBytes: spki, keyDetails: PublicKeyDetails.PKIX_ECDSA_P256_SHA_256 },
  });
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });

  let bundle;
  try {
    bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
  } catch (error) {
    fail(`invalid bundle: ${error.message}${error.fields ? ' ' + JSON.stringify(error.fields) : ''}`);
  }
  const artifact = args.artifact === undefined ? undefined : fs.readFileSync(args.artifact);
  try {
    verifier.verify(toSignedEntity(bundle, artifact));
  } catch (error) {
    fail(`${error.code || error.name}: ${error.message}`);
  }

  let payloadType = '-';
  let predicateType = '-';
  let content = 'message-signature';
  if (isBundleWithDsseEnvelope(bundle)) {
    content = 'dsse-envelope';
    const envelope = bundle.content.dsseEnvelope;
    payloadType = envelope.payloadType;
    if (payloadType === 'application/vnd.in-toto+json') {
      const statement = JSON.parse(Buffer.from(envelope.payload).toString('utf8'));
      predicateType = statement.predicateType;
      if (args.digest !== undefined) {
        const [algorithm, hex] = args.digest.split(':');
        const subjects = statement.subject || [];
        if (!subjects.some((s) => s.digest && s.digest[algorithm] === hex)) {
          fail(`SUBJECT_ERROR: no subject is ${args.digest}`);
        }
      }
    } else if (args.digest !== undefined) {
      fail(`SUBJECT_ERROR: payload type ${payloadType} names no subject`);
    }
  } else if (artifact !== undefined) {
    const message = bundle.content.messageSignature;
    const sha256 = crypto.createHash('sha256').update(artifact).digest();
    if (!sha256.equals(Buffer.from(message.messageDigest.digest))) {
      fail('DIGEST_ERROR: messageDigest is not the artifact\'s');
    }
    if (args.digest !== undefined && args.digest !== `sha256:${sha256.toString('hex')}`) {
      fail(`SUBJECT_ERROR: the artifact is not ${args.digest}`);
    }
  }
  process.stdout.write(`OK ${content} ${payloadType} ${predicateType}\n`);
}

main();
