'use strict';
const assert = require('node:assert/strict');
const { Blockchain } = require('@ton/sandbox');
const { toNano, beginCell } = require('@ton/core');
const { keyPairFromSeed, sign } = require('@ton/crypto');
const { flattenTransaction, findTransaction } = require('@ton/test-utils');
const k = require('../lib/kokon');

const T0 = 1_800_000_000;

function keys(label) {
  const seed = Buffer.alloc(32);
  seed.write(label);
  return keyPairFromSeed(seed);
}

// A fresh chain with a client, a proxy, a worker and a stranger.
async function world() {
  const chain = await Blockchain.create();
  chain.now = T0;
  chain.verbosity = { ...chain.verbosity, print: false, vmLogs: 'none', blockchainLogs: false, debugLogs: false };
  const [client, proxy, worker, stranger] = await chain.createWallets(4, { balance: toNano('1000') });
  return { chain, client, proxy, worker, stranger,
    ck: keys('client'), pk: keys('proxy'), wk: keys('worker') };
}

async function deployVault(w, { stake = toNano('10'), delay = 3600, network } = {}) {
  const { init, address } = k.stateInit('vault', k.vaultData({ owner: w.pk.publicKey, ownerWallet: w.proxy.address, network }));
  const r = await w.proxy.send({ to: address, value: stake + toNano('0.05'), init, body: k.body.openVault(stake, delay) });
  expectOk(r, address);
  return address;
}

async function deployChannel(w, vault, { deposit = toNano('5'), delay = 3600, seq = 0n, network } = {}) {
  const data = k.channelData({ client: w.ck.publicKey, proxy: w.pk.publicKey, clientWallet: w.client.address,
    proxyWallet: w.proxy.address, vault, seq, network });
  const { init, address } = k.stateInit('channel', data);
  const r = await w.client.send({ to: address, value: deposit + toNano('0.05'), init, body: k.body.open(deposit, delay) });
  expectOk(r, address);
  return address;
}

function txTo(result, address) {
  return result.transactions.filter((t) => flattenTransaction(t).to?.equals(address));
}

// The (first) transaction on `address` succeeded.
function expectOk(result, address) {
  const tx = txTo(result, address)[0];
  assert.ok(tx, `no transaction on ${address}`);
  const f = flattenTransaction(tx);
  assert.equal(f.exitCode, 0, `exit code ${f.exitCode} on ${address}`);
  assert.equal(f.aborted, false);
  return f;
}

// The transaction on `address` failed with `code` and its message bounced.
function expectFail(result, address, code) {
  const f = flattenTransaction(txTo(result, address)[0]);
  assert.equal(f.exitCode, code, `expected exit ${code}, got ${f.exitCode}`);
  assert.equal(f.aborted, true);
}

const get = async (chain, address, method, args = []) =>
  (await chain.runGetMethod(address, method, args)).stackReader;

async function channelState(chain, address) {
  const r = await get(chain, address, 'channel');
  return { client: r.readBigNumber(), proxy: r.readBigNumber(), deposit: r.readBigNumber(),
    claimed: r.readBigNumber(), closeDelay: r.readNumber(), deadline: r.readNumber(), closed: r.readBoolean() };
}

async function vaultState(chain, address) {
  const r = await get(chain, address, 'vault');
  return { owner: r.readBigNumber(), ownerWallet: r.readAddress(), withdrawDelay: r.readNumber(),
    balance: r.readBigNumber(), pending: r.readBigNumber(), notBefore: r.readNumber() };
}

async function workerClaimed(chain, vault, workerKey) {
  const r = await get(chain, vault, 'workerClaimed', [{ type: 'int', value: k.key(workerKey) }]);
  return r.readBigNumber();
}

function signedChannelVoucher(secretKey, channel, amount) {
  const v = k.channelVoucher(channel, amount);
  return { voucher: v, signature: sign(v.hash(), secretKey) };
}

// A worker claim body: proxy-signed voucher plus the worker's payout consent.
function workerClaimBody(w, vault, amount, { payTo = w.worker.address, proxyKey = w.pk, workerKey = w.wk } = {}) {
  const v = k.workerVoucher(vault, w.wk.publicKey, amount);
  const consent = k.payoutConsent(v.hash(), payTo);
  return k.body.workerClaim(sign(v.hash(), proxyKey.secretKey), v, payTo, sign(consent.hash(), workerKey.secretKey));
}

module.exports = {
  T0, keys, world, deployVault, deployChannel, expectOk, expectFail, txTo, get, channelState,
  vaultState, workerClaimed, signedChannelVoucher, workerClaimBody, toNano, beginCell, sign,
  flattenTransaction, findTransaction,
};
