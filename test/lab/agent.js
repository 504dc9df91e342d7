#!/usr/bin/env node
'use strict';
// Traffic agent run inside a lab namespace (`ip netns exec NS node agent.js ...`). Every mode is
// bounded in time; long-lived modes run until their parent kills them.
//   listen tcp|udp PORT        echo server on [::] (dual stack); prints "ready"
//   try HOST PORT MS           TCP connect, send a line, exit 0 iff it is echoed within MS
//   open HOST PORT MS          exit 0 iff a TCP connection is established within MS
//   udp HOST PORT MS           one datagram, exit 0 iff it is echoed within MS
//   client HOST PORT           long-lived TCP client: prints "ready", copies stdin lines to the
//                              socket and socket data to stdout
const net = require('net');
const dgram = require('dgram');

const [mode, ...args] = process.argv.slice(2);

function listen(kind, port) {
  if (kind === 'udp') {
    const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    sock.bind(port, '::', () => process.stdout.write('ready\n'));
    return;
  }
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.listen({ port, host: '::', ipv6Only: false }, () => process.stdout.write('ready\n'));
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

function client(host, port) {
  const s = net.connect({ host, port });
  s.on('error', (e) => {
    process.stderr.write(`client error ${e.message}\n`);
    process.exit(1);
  });
  s.on('connect', () => process.stdout.write('ready\n'));
  s.on('data', (d) => process.stdout.write(d));
  process.stdin.on('data', (d) => s.write(d));
  process.stdin.on('end', () => process.exit(0));
}

switch (mode) {
  case 'listen':
    listen(args[0], Number(args[1]));
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
  default:
    process.stderr.write(`unknown mode ${mode}\n`);
    process.exit(2);
}
