#!/usr/bin/env node
'use strict';
// Traffic agent run inside a lab namespace (`ip netns exec NS node agent.js ...`). Every mode is
// bounded in time; long-lived modes run until their parent kills them.
//   listen tcp|udp PORT [ADDR] echo server on [::] (dual stack) or ADDR alone; prints "ready"
//   try HOST PORT MS           TCP connect, send a line, exit 0 iff it is echoed within MS
//   open HOST PORT MS          exit 0 iff a TCP connection is established within MS
//   udp HOST PORT MS           one datagram, exit 0 iff it is echoed within MS
//   client HOST PORT           long-lived TCP client: prints "ready", copies stdin lines to the
//                              socket and socket data to stdout
//   uclient HOST PORT          the same over a connected UDP socket
//   ubound HOST PORT LPORT     the same over an unconnected UDP socket bound to LPORT (any sender's
//                              datagrams are printed)
//   bclient HOST PORT LPORT [LADDR]  a long-lived TCP client (as `client`) bound to local port LPORT
//                              (and address LADDR): a reverse shell opened from a chosen port
const net = require('net');
const dgram = require('dgram');

const [mode, ...args] = process.argv.slice(2);

function listen(kind, port, addr) {
  if (kind === 'udp') {
    const sock = addr ? dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4') : dgram.createSocket({ type: 'udp6', ipv6Only: false });
    sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    sock.bind(port, addr || '::', () => process.stdout.write('ready\n'));
    return;
  }
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.listen(addr ? { port, host: addr } : { port, host: '::', ipv6Only: false }, () => process.stdout.write('ready\n'));
}

function tryTcp(host, port, ms) {
  const timer = setTimeout(() => process.exit(1), ms);
  const s = net.connect({ host, port });
  s.on('error', () => process.exit(1));
  s.on('connect', () => s.write('ping\n'));
  s.on('data', (d) => {
    if (d.toString().includes('ping')) {
      clearTimeout(timer);
      process.exit(0);
    }
  });
}

function openTcp(host, port, ms) {
  setTimeout(() => process.exit(1), ms);
  const s = net.connect({ host, port });
  s.on('error', () => process.exit(1));
  s.on('connect', () => process.exit(0));
}

function tryUdp(host, port, ms) {
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  setTimeout(() => process.exit(1), ms);
  sock.on('message', () => process.exit(0));
  sock.on('error', () => process.exit(1));
  sock.send('ping', port, host);
}

// `client`, and `bclient` (the same bound to local port `bind.port`, and address `bind.addr`)
function client(host, port, bind) {
  const s = net.connect({ host, port, ...(bind ? { localPort: bind.port } : {}), ...(bind && bind.addr ? { localAddress: bind.addr } : {}) });
  s.on('error', (e) => {
    process.stderr.write(`${bind ? 'bclient' : 'client'} error ${e.message}\n`);
    process.exit(1);
  });
  s.on('connect', () => process.stdout.write('ready\n'));
  s.on('data', (d) => process.stdout.write(d));
  process.stdin.on('data', (d) => s.write(d));
  process.stdin.on('end', () => process.exit(0));
}

function uclient(host, port) {
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  sock.on('error', (e) => {
    process.stderr.write(`uclient error ${e.message}\n`);
    process.exit(1);
  });
  sock.on('message', (d) => process.stdout.write(d));
  sock.connect(port, host, () => process.stdout.write('ready\n'));
  process.stdin.on('data', (d) => sock.send(d, (e) => e && process.exit(1)));
  process.stdin.on('end', () => process.exit(0));
}

function ubound(host, port, lport) {
  const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
  sock.on('error', (e) => {
    process.stderr.write(`ubound error ${e.message}\n`);
    process.exit(1);
  });
  sock.on('message', (d) => process.stdout.write(d));
  const to = host.includes(':') ? host : `::ffff:${host}`;
  sock.bind(lport, '::', () => process.stdout.write('ready\n'));
  process.stdin.on('data', (d) => sock.send(d, port, to));
  process.stdin.on('end', () => process.exit(0));
}

switch (mode) {
  case 'listen':
    listen(args[0], Number(args[1]), args[2]);
    break;
  case 'try':
    tryTcp(args[0], Number(args[1]), Number(args[2]));
    break;
  case 'open':
    openTcp(args[0], Number(args[1]), Number(args[2]));
    break;
  case 'udp':
    tryUdp(args[0], Number(args[1]), Number(args[2]));
    break;
  case 'client':
    client(args[0], Number(args[1]));
    break;
  case 'bclient':
    client(args[0], Number(args[1]), { port: Number(args[2]), addr: args[3] });
    break;
  case 'uclient':
    uclient(args[0], Number(args[1]));
    break;
  case 'ubound':
    ubound(args[0], Number(args[1]), Number(args[2]));
    break;
  default:
    process.stderr.write(`unknown mode ${mode}\n`);
    process.exit(2);
}
