#!/usr/bin/python3
"""smtp_server.py: an SMTP server on loopback for the sending tests.

Built on aiosmtpd (Debian's python3-aiosmtpd).  It listens on --host
(127.0.0.1) and --port (0: the kernel chooses) and prints "PORT n" as the
first line of stdout once it accepts connections.

  --mode starttls   plain connection, STARTTLS with --cert/--key
  --mode implicit   TLS from the first byte (like port 465)
  --mode plain      no TLS at all; AUTH is offered in cleartext

AUTH PLAIN and LOGIN accept only --user/--password; with --token, XOAUTH2
and OAUTHBEARER accept only that bearer token for --user.  --mechs limits
the mechanisms offered (space-separated).

Behaviours for failure tests:
  --reject-rcpt ADDR     RCPT TO:<ADDR> gets a two-line 550 reply
  --drop-data-from ADDR  when MAIL FROM was ADDR, the connection is dropped
                         after the first line of DATA
  --no-8bitmime          8BITMIME is not announced
  --smtputf8             SMTPUTF8 is announced and accepted
  --tempfail-first N     the first N messages get 451 4.3.0 after their data
                         ("conn=N TEMPFAIL" in events.log), later ones are taken
  --reject-all           every RCPT gets 550 5.1.1
  --log-connections      also "conn=N OPEN" and "conn=N CLOSED" in events.log,
                         so a test can wait until the server is done with a
                         client it killed

With --stdin-eof-exits the server ends when its stdin reaches the end, so a
test that keeps the other end of a pipe open cannot leave it behind even
if it crashes.

Every accepted message is written to --outdir as msg-N.json (written to a
temporary name and renamed):
  mail_from, rcpt_tos, mail_options   as text (for people reading it)
  mail_from_b64, rcpt_tos_b64, data   base64 of the exact bytes (data is
                                      the content after the dot-stuffing
                                      was undone)
  auth_login, tls
Every command is appended to --outdir/events.log as "conn=N CMD tls=0|1"
(AUTH lines also carry the mechanism), so that tests can check what the
server saw; "conn=N DROP" marks a dropped DATA.
"""

import argparse
import asyncio
import base64
import json
import logging
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, MISSING


def b64(data):
    return base64.b64encode(data).decode('ascii')


def raw(text):
    """The bytes aiosmtpd decoded an address from."""
    if isinstance(text, bytes):
        return text
    return text.encode('utf-8', 'surrogateescape')


class State:
    def __init__(self, args):
        self.args = args
        self.conn_seq = 0
        self.msg_seq = 0
        self.tempfails = 0

    def event(self, text):
        with open(os.path.join(self.args.outdir, 'events.log'), 'a') as f:
            f.write(text + '\n')

    def save(self, record):
        self.msg_seq += 1
        name = os.path.join(self.args.outdir, 'msg-%d.json' % self.msg_seq)
        tmp = name + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(record, f, indent=1)
            f.write('\n')
        os.rename(tmp, name)


class Handler:
    def __init__(self, state):
        self.state = state

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.state.args.no_8bitmime:
            responses = [r for r in responses if r[4:].upper() != '8BITMIME']
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.state.args.reject_all:
            return '550 5.1.1 <%s>: no such user here' % address
        if address in self.state.args.reject_rcpt:
            return ('550-5.1.1 <%s>: Recipient address rejected\r\n'
                    '550 5.1.1 User unknown in virtual mailbox table' % address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return '250 2.1.5 OK'

    async def handle_DATA(self, server, session, envelope):
        tls = server.implicit_tls or server._tls_protocol is not None
        if self.state.tempfails < self.state.args.tempfail_first:
            self.state.tempfails += 1
            self.state.event('conn=%d TEMPFAIL' % server.conn_id)
            return '451 4.3.0 Temporary failure, try again later'
        self.state.save({
            'mail_from': envelope.mail_from,
            'mail_from_b64': b64(raw(envelope.mail_from)),
            'rcpt_tos': envelope.rcpt_tos,
            'rcpt_tos_b64': [b64(raw(r)) for r in envelope.rcpt_tos],
            'mail_options': envelope.mail_options,
            'data': b64(envelope.original_content),
            'auth_login': (session.auth_data.login.decode('utf-8', 'replace')
                           if isinstance(session.auth_data, LoginPassword)
                           else None),
            'tls': tls,
        })
        return '250 2.0.0 Ok: queued as %d' % self.state.msg_seq

    def _token_ok(self, user, token):
        a = self.state.args
        return a.token is not None and user == a.user and token == a.token

    async def auth_XOAUTH2(self, server, args):
        # "user=" user ^A "auth=Bearer " token ^A ^A
        if len(args) == 2:
            blob = base64.b64decode(args[1])
        else:
            blob = await server.challenge_auth('')
            if blob is MISSING:
                return AuthResult(success=False)
        fields = blob.split(b'\x01')
        user = token = None
        for f in fields:
            if f.startswith(b'user='):
                user = f[5:].decode('utf-8', 'replace')
            elif f.startswith(b'auth=Bearer '):
                token = f[12:].decode('utf-8', 'replace')
        if self._token_ok(user, token):
            return AuthResult(success=True, auth_data=LoginPassword(raw(user), b''))
        err = json.dumps({'status': '401', 'schemes': 'Bearer',
                          'scope': 'https://mail.example/'}).encode()
        await server.challenge_auth(err)
        return AuthResult(success=False, handled=False,
                          message='535 5.7.8 Username and Password not accepted')

    async def auth_OAUTHBEARER(self, server, args):
        # gs2 header "n,a=user," ^A "host=..." ^A "port=..." ^A "auth=Bearer token" ^A ^A
        if len(args) == 2:
            blob = base64.b64decode(args[1])
        else:
            blob = await server.challenge_auth('')
            if blob is MISSING:
                return AuthResult(success=False)
        parts = blob.split(b'\x01')
        user = token = None
        gs2 = parts[0].split(b',')
        for g in gs2:
            if g.startswith(b'a='):
                user = g[2:].decode('utf-8', 'replace')
        for f in parts[1:]:
            if f.startswith(b'auth=Bearer '):
                token = f[12:].decode('utf-8', 'replace')
        if self._token_ok(user, token):
            return AuthResult(success=True, auth_data=LoginPassword(raw(user), b''))
        err = json.dumps({'status': 'invalid_token'}).encode()
        await server.challenge_auth(err)
        return AuthResult(success=False, handled=False,
                          message='535 5.7.8 Authentication failed: invalid token')


class TestSMTP(SMTP):
    def __init__(self, state, implicit_tls, *a, **kw):
        super().__init__(*a, **kw)
        self.state = state
        self.implicit_tls = implicit_tls
        state.conn_seq += 1
        self.conn_id = state.conn_seq
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._recording(name, method)

    def connection_made(self, transport):
        if self.state.args.log_connections:
            self.state.event('conn=%d OPEN' % self.conn_id)
        super().connection_made(transport)

    def connection_lost(self, error):
        super().connection_lost(error)
        if self.state.args.log_connections:
            self.state.event('conn=%d CLOSED' % self.conn_id)

    def _tls_now(self):
        return self.implicit_tls or self._tls_protocol is not None

    def _recording(self, name, method):
        async def wrapper(arg):
            extra = ''
            if name == 'AUTH' and arg:
                extra = ' mech=' + arg.split()[0].upper()
            self.state.event('conn=%d %s tls=%d%s'
                             % (self.conn_id, name, int(self._tls_now()), extra))
            return await method(arg)
        return wrapper

    async def smtp_DATA(self, arg):
        drop = self.state.args.drop_data_from
        if drop and self.envelope.mail_from == drop and self.envelope.rcpt_tos:
            await self.push('354 End data with <CR><LF>.<CR><LF>')
            await self._reader.readline()
            self.state.event('conn=%d DROP' % self.conn_id)
            self.transport.abort()
            return
        await super().smtp_DATA(arg)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, default=0)
    p.add_argument('--mode', choices=['starttls', 'implicit', 'plain'], required=True)
    p.add_argument('--cert')
    p.add_argument('--key')
    p.add_argument('--user', default='alice')
    p.add_argument('--password', default='secret')
    p.add_argument('--token')
    p.add_argument('--mechs', default='PLAIN LOGIN XOAUTH2 OAUTHBEARER')
    p.add_argument('--reject-rcpt', action='append', default=[])
    p.add_argument('--drop-data-from')
    p.add_argument('--no-8bitmime', action='store_true')
    p.add_argument('--smtputf8', action='store_true')
    p.add_argument('--tempfail-first', type=int, default=0)
    p.add_argument('--reject-all', action='store_true')
    p.add_argument('--log-connections', action='store_true')
    p.add_argument('--outdir', required=True)
    p.add_argument('--stdin-eof-exits', action='store_true')
    args = p.parse_args()

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    state = State(args)
    handler = Handler(state)

    ctx = None
    if args.mode != 'plain':
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)

    offered = set(args.mechs.split())
    exclude = [m for m in ('PLAIN', 'LOGIN', 'XOAUTH2', 'OAUTHBEARER')
               if m not in offered]

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == args.user.encode()
              and auth_data.password == args.password.encode())
        if ok:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False: aiosmtpd sends the 535 reply itself
        return AuthResult(success=False, handled=False)

    implicit = args.mode == 'implicit'

    def factory():
        return TestSMTP(state, implicit, handler,
                        tls_context=ctx if args.mode == 'starttls' else None,
                        # over implicit TLS or on purpose in cleartext
                        auth_require_tls=(args.mode == 'starttls'),
                        auth_exclude_mechanism=exclude,
                        authenticator=authenticator,
                        enable_SMTPUTF8=args.smtputf8,
                        hostname='smtp.test',
                        loop=loop)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(
        factory, host=args.host, port=args.port,
        ssl=ctx if implicit else None))
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write('PORT %d\n' % port)
    sys.stdout.flush()
    if args.stdin_eof_exits:
        def stdin_readable():
            if not os.read(sys.stdin.fileno(), 4096):
                loop.stop()
        loop.add_reader(sys.stdin.fileno(), stdin_readable)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == '__main__':
    main()
