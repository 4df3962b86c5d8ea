'use strict';
// Vectors computed and signed by the Rust crates (vectors/rust.json, written
// by crates/kokon-ton/tests/vectors.rs), fed to the real contracts.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Address, Cell } = require('@ton/core');
const { signVerify } = require('@ton/crypto');
const { internal } = require('@ton/sandbox');
const k = require('../lib/kokon');
const h = require('./helpers');
const { toNano } = h;

const V = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'vectors', 'rust.json'), 'utf8'));
const pub = (who) => Buffer.from(V.keys[who].public, 'hex');
const wallet = (who) => Address.parse(V.wallets_v4r2[who]);
const cell = (signed) => Cell.fromBoc(Buffer.from(signed.boc, 'hex'))[0];
const sig = (signed) => Buffer.from(signed.signature, 'hex');

// Sends as the wallet at `from` (Rust computed it; no key is needed in the emulator).
const as = (chain, from) => ({
  send: ({ to, value, init, body }) => chain.sendMessage(internal({ from, to, value, body, stateInit: init, bounce: true })),
});

function addresses() {
  const vault = k.stateInit('vault', k.vaultData({ owner: pub('proxy'), ownerWallet: wallet('proxy') }));
  const channel = k.stateInit('channel', k.channelData({ client: pub('client'), proxy: pub('proxy'),
    clientWallet: wallet('client'), proxyWallet: wallet('proxy'), vault: vault.address, seq: BigInt(V.channel.seq) }));
  return { vault, channel };
}

test('addresses and initial data computed in Rust equal those of @ton/core', () => {
  const { vault, channel } = addresses();
  assert.equal(vault.address.toRawString(), V.vault.address);
  assert.equal(channel.address.toRawString(), V.channel.address);
  assert.equal(vault.init.data.toBoc({ idx: false, crc32: false }).toString('hex'), V.vault.data);
  assert.equal(channel.init.data.toBoc({ idx: false, crc32: false }).toString('hex'), V.channel.data);
});

test('cells Rust signs have the layout the contracts read', () => {
  const { vault, channel } = addresses();
  const cv = k.channelVoucher(channel.address, BigInt(V.channel_voucher.amount));
  assert.equal(cv.hash().toString('hex'), V.channel_voucher.signed.hash);
  const wv = k.workerVoucher(vault.address, pub('worker'), BigInt(V.worker_voucher.amount));
  assert.equal(wv.hash().toString('hex'), V.worker_voucher.signed.hash);
  const consent = k.payoutConsent(wv.hash(), wallet('worker'));
  assert.equal(consent.hash().toString('hex'), V.payout.consent_hash);
  // Receipts are checked off chain, but with the same primitive.
  const r = V.receipt.signed;
  assert.equal(cell(r).hash().toString('hex'), r.hash);
  assert.ok(signVerify(cell(r).hash(), sig(r), pub('worker')));
  const forged = Buffer.from(sig(r));
  forged[10] ^= 0x40;
  assert.ok(!signVerify(cell(r).hash(), forged, pub('worker')));
});

test('the channel accepts the Rust-signed voucher and rejects the tampered one', async () => {
  const w = await h.world();
  const { vault, channel } = addresses();
  const proxyWallet = as(w.chain, wallet('proxy'));
  const clientWallet = as(w.chain, wallet('client'));
  h.expectOk(await proxyWallet.send({ to: vault.address, value: toNano('10.05'), init: vault.init,
    body: k.body.openVault(toNano('10'), 3600) }), vault.address);
  h.expectOk(await clientWallet.send({ to: channel.address, value: toNano('5.05'), init: channel.init,
    body: k.body.open(toNano('5'), 3600) }), channel.address);

  const tampered = V.tampered_channel_voucher.signed;
  let r = await proxyWallet.send({ to: channel.address, value: toNano('0.05'), body: k.body.claim(sig(tampered), cell(tampered)) });
  h.expectFail(r, channel.address, k.ERR.badSignature);

  const good = V.channel_voucher.signed;
  r = await proxyWallet.send({ to: channel.address, value: toNano('0.05'), body: k.body.claim(sig(good), cell(good)) });
  h.expectOk(r, channel.address);
  h.expectOk(r, vault.address);
  assert.equal((await h.channelState(w.chain, channel.address)).claimed, BigInt(V.channel_voucher.amount));
});

test('the vault pays the Rust-signed worker voucher to the address the worker signed', async () => {
  const w = await h.world();
  const { vault } = addresses();
  const proxyWallet = as(w.chain, wallet('proxy'));
  h.expectOk(await proxyWallet.send({ to: vault.address, value: toNano('10.05'), init: vault.init,
    body: k.body.openVault(toNano('10'), 3600) }), vault.address);
  const wv = V.worker_voucher.signed;
  const payTo = Address.parse(V.payout.pay_to);
  const payoutSig = Buffer.from(V.payout.signature, 'hex');
  // The worker's consent does not cover another payout address.
  let r = await w.stranger.send({ to: vault.address, value: toNano('0.05'),
    body: k.body.workerClaim(sig(wv), cell(wv), w.stranger.address, payoutSig) });
  h.expectFail(r, vault.address, k.ERR.badSignature);
  r = await w.stranger.send({ to: vault.address, value: toNano('0.05'),
    body: k.body.workerClaim(sig(wv), cell(wv), payTo, payoutSig) });
  h.expectOk(r, vault.address);
  assert.equal(h.txTo(r, payTo).length, 1);
  assert.equal(await h.workerClaimed(w.chain, vault.address, pub('worker')), BigInt(V.worker_voucher.amount));
});
