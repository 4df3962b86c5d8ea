// Cells and message bodies of Kokon's contracts, for the sandbox tests and
// the local chain server. The layouts follow src/*.tolk field by field; the
// Rust backend (crates/kokon-ton) builds the same bits.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { beginCell, Cell, Dictionary, contractAddress } = require('@ton/core');

const BUILD = path.join(__dirname, '..', 'build');

const OP = {
  excess: 0x4b4f0000,
  openVault: 0x4b4f0101, deposit: 0x4b4f0102, workerClaim: 0x4b4f0103,
  requestWithdrawal: 0x4b4f0104, withdraw: 0x4b4f0105,
  open: 0x4b4f0201, topUp: 0x4b4f0202, claim: 0x4b4f0203, closeCooperative: 0x4b4f0204,
  startClose: 0x4b4f0205, finishClose: 0x4b4f0206,
  setEconomics: 0x4b4f0301, setImage: 0x4b4f0302, setModel: 0x4b4f0303,
  setProxy: 0x4b4f0304, transferOwnership: 0x4b4f0305, setTdPolicy: 0x4b4f0306,
  setUpstream: 0x4b4f0307, setGatewayKeys: 0x4b4f0308,
};

const ERR = {
  wrongSender: 100, badSignature: 101, wrongTag: 102, wrongTarget: 103, notAboveLatest: 104,
  aboveDeposit: 105, notOpen: 106, delayOver: 107, notClosing: 108, delayNotOver: 109,
  valueTooLow: 110, vaultShort: 111, zeroAmount: 112, alreadyOpen: 113, noWithdrawal: 114,
  badDelay: 115,
  unknownOp: 0xffff,
};

const TAG = { channelVoucher: 0x6b766331, workerVoucher: 0x6b767731, payout: 0x6b767031 };
const ROLE = { proxy: 1, worker: 2 };

function code(name) {
  return Cell.fromBoc(fs.readFileSync(path.join(BUILD, `${name}.code.boc`)))[0];
}

const key = (buf) => BigInt('0x' + Buffer.from(buf).toString('hex'));

// Networks, as in contracts/src/common.tolk.
const NETWORK = { mainnet: -239, testnet: -3, sandbox: 1 };

function vaultData({ owner, ownerWallet, network = NETWORK.sandbox }) {
  return beginCell()
    .storeUint(key(owner), 256).storeAddress(ownerWallet).storeInt(network, 32)
    .storeUint(0, 32).storeCoins(0).storeCoins(0).storeUint(0, 32)
    .storeDict(null)
    .endCell();
}

function channelData({ client, proxy, clientWallet, proxyWallet, vault, seq, network = NETWORK.sandbox }) {
  const parties = beginCell()
    .storeAddress(clientWallet).storeAddress(proxyWallet).storeAddress(vault)
    .storeUint(seq, 64).storeInt(network, 32).endCell();
  return beginCell()
    .storeUint(key(client), 256).storeUint(key(proxy), 256)
    .storeCoins(0).storeCoins(0).storeUint(0, 32).storeUint(0, 32).storeBit(false)
    .storeRef(parties)
    .endCell();
}

function pricesCell(p = {}) {
  return beginCell()
    .storeUint(p.basePerMillion ?? 10_000_000n, 64)
    .storeUint(p.prompt ?? 1000, 32).storeUint(p.cachedPrompt ?? 250, 32)
    .storeUint(p.completion ?? 3000, 32).storeUint(p.reasoning ?? 3000, 32)
    .storeDict(null)
    .endCell();
}

function economicsCell(e = {}) {
  return beginCell()
    .storeUint(e.commissionBps ?? 1000, 16)
    .storeUint(e.channelCloseDelay ?? 3600, 32).storeUint(e.vaultWithdrawDelay ?? 3600, 32)
    .storeCoins(e.minProxyStake ?? 0n).storeCoins(e.minWorkerStake ?? 0n)
    .storeRef(e.prices ?? pricesCell())
    .endCell();
}

function registryData({ owner, economics }) {
  const trust = beginCell().storeDict(null).storeDict(null).storeRef(beginCell().endCell())
    .storeDict(null).endCell();
  return beginCell()
    .storeAddress(owner).storeUint(0, 32).storeRef(economics ?? economicsCell())
    .storeRef(trust).storeDict(null).storeDict(null)
    .endCell();
}

function stateInit(name, data, workchain = 0) {
  const init = { code: code(name), data };
  return { init, address: contractAddress(workchain, init) };
}

// Signed cells (kokon_money::message).
const channelVoucher = (channel, amount) => beginCell()
  .storeUint(TAG.channelVoucher, 32).storeAddress(channel).storeCoins(amount).endCell();
const workerVoucher = (vault, worker, amount) => beginCell()
  .storeUint(TAG.workerVoucher, 32).storeAddress(vault).storeUint(key(worker), 256)
  .storeCoins(amount).endCell();
const payoutConsent = (voucherHash, payTo) => beginCell()
  .storeUint(TAG.payout, 32).storeBuffer(voucherHash).storeAddress(payTo).endCell();

// Bytes as a snake cell (127 per cell, continued in the first reference),
// as kokon_ton::cells::bytes_cell writes them.
function bytesCell(bytes) {
  let tail = null;
  for (let at = Math.floor((bytes.length - 1) / 127) * 127; at >= 0; at -= 127) {
    const b = beginCell().storeBuffer(bytes.subarray(at, at + 127));
    tail = (tail ? b.storeRef(tail) : b).endCell();
  }
  return tail ?? beginCell().endCell();
}

const head = (op, queryId = 0n) => beginCell().storeUint(op, 32).storeUint(queryId, 64);

const body = {
  openVault: (amount, withdrawDelay) =>
    head(OP.openVault).storeCoins(amount).storeUint(withdrawDelay, 32).endCell(),
  deposit: (amount) => head(OP.deposit).storeCoins(amount).endCell(),
  workerClaim: (signature, voucher, payTo, workerSignature) => head(OP.workerClaim)
    .storeBuffer(signature).storeRef(voucher)
    .storeRef(beginCell().storeAddress(payTo).storeBuffer(workerSignature).endCell())
    .endCell(),
  requestWithdrawal: (amount) => head(OP.requestWithdrawal).storeCoins(amount).endCell(),
  withdraw: () => head(OP.withdraw).endCell(),
  open: (amount, closeDelay) =>
    head(OP.open).storeCoins(amount).storeUint(closeDelay, 32).endCell(),
  topUp: (amount) => head(OP.topUp).storeCoins(amount).endCell(),
  claim: (signature, voucher) => head(OP.claim).storeBuffer(signature).storeRef(voucher).endCell(),
  closeCooperative: (signature, voucher) => head(OP.closeCooperative)
    .storeBuffer(signature ?? Buffer.alloc(64)).storeMaybeRef(voucher ?? null).endCell(),
  startClose: () => head(OP.startClose).endCell(),
  finishClose: () => head(OP.finishClose).endCell(),
  setEconomics: (economics) => head(OP.setEconomics).storeRef(economics).endCell(),
  setImage: (image, roles) => head(OP.setImage).storeBuffer(image).storeUint(roles, 8).endCell(),
  // name = null removes the model.
  setModel: (model, name) => head(OP.setModel).storeBuffer(model)
    .storeMaybeRef(name === null ? null
      : beginCell().storeRef(beginCell().storeStringTail(name).endCell()).endCell())
    .endCell(),
  setProxy: (proxyKey, entry) => head(OP.setProxy).storeBuffer(proxyKey)
    .storeMaybeRef(entry ? beginCell().storeAddress(entry.wallet)
      .storeRef(beginCell().storeStringTail(entry.endpoint).endCell()).endCell() : null)
    .endCell(),
  transferOwnership: (newOwner) => head(OP.transferOwnership).storeAddress(newOwner).endCell(),
  setTdPolicy: (td) => head(OP.setTdPolicy).storeRef(td).endCell(),
  setUpstream: (key, origin) => head(OP.setUpstream).storeBuffer(key)
    .storeMaybeRef(origin === null ? null
      : beginCell().storeRef(beginCell().storeStringTail(origin).endCell()).endCell())
    .endCell(),
  // entry = null withdraws the proxy's keys.
  setGatewayKeys: (proxyKey, entry) => head(OP.setGatewayKeys).storeBuffer(proxyKey)
    .storeMaybeRef(entry ? beginCell().storeRef(bytesCell(entry.ohttp))
      .storeBuffer(entry.credits ?? Buffer.alloc(32)).endCell() : null)
    .endCell(),
};

module.exports = {
  OP, ERR, TAG, ROLE, NETWORK, code, key, vaultData, channelData, registryData, economicsCell,
  pricesCell, stateInit, bytesCell, channelVoucher, workerVoucher, payoutConsent, body, Dictionary,
};
