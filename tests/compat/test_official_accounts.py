"""Accounts through GIGALIXIR's official CLI (`gigalixir==1.16.1` from PyPI), unchanged:
sign-up, email confirmation, password reset and change, a new email, multi-factor
authentication, collaborators and viewers, destroying the account.

The platforms here confirm emails and mail over SMTP to a real server, aiosmtpd (PyPI,
installed by scripts/test-compat), run by this module: every code, link and token a test
uses is read from a mail that went through it. Every test class has a platform of its own,
and accounts (emails) and apps of its own. Run with scripts/test-compat.

The official CLI keeps its key under GIGALIXIR's host names (`machine api.gigalixir.com`);
against the platform at `localhost` its HTTP library reads `machine localhost`. After an
official `login` or `signup` the tests copy the key the CLI saved to that entry, as a user
of a self-hosted platform does, so the commands that follow use the very key it got.
"""

import base64
import email
import email.policy
import hashlib
import hmac
import json
import mailbox
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from harness import Checks, Platform, Result, User, free_port, wait_for

SMTP = None

# How long a mail, a prompt or an interactive command may take; only a failure waits this
# long.
MAIL_SECONDS = 30
PROMPT_SECONDS = 60

# What the official CLI says for a 401 (its `AuthException`).
NO_ACCESS = (
    "Sorry, you do not have access to that app or account. Try passing the app name "
    "explicitly with the `-a` flag. If that doesn't work, try running `gigalixir login` or "
    "check your ~/.netrc file."
)


def refused_login(address):
    """What the official `login` says to a wrong password (a 401)."""
    return (
        "Sorry, we could not authenticate you. If you need to reset your password, run "
        f"`gigalixir account:password:reset --email={address}`."
    )


def setUpModule():
    global SMTP
    SMTP = SmtpServer(free_port())
    unittest.addModuleCleanup(SMTP.stop)
    SMTP.start()


# --- the SMTP server ----------------------------------------------------------------------


class Mail:
    """One message the SMTP server received."""

    def __init__(self, message):
        self.subject = str(message["Subject"])
        self.to = str(message["To"])
        payload = message.get_payload(decode=True)
        self.body = payload.decode(message.get_content_charset() or "utf-8")

    def _find(self, pattern):
        found = re.search(pattern, self.body)
        if not found:
            raise AssertionError(f"no {pattern!r} in the mail {self.subject!r}:\n{self.body}")
        return found.group(1)

    @property
    def code(self):
        """The sign-up confirmation code."""
        return self._find(r"Your confirmation code: (\S+)")

    @property
    def link(self):
        """The confirmation link."""
        return self._find(r"(http://\S+/api/users/confirm\?token=\S+)")

    @property
    def token(self):
        """The `ID.TOKEN` of the command the mail gives."""
        return self._find(r"--token (\S+)")


class Inbox:
    """The mail one address received, read in the order it came."""

    def __init__(self, server, address):
        self.server = server
        self.address = address.lower()
        self.read = set()

    def unread(self):
        return [
            (key, message)
            for key, message in self.server.messages()
            if key not in self.read and self.address in recipients(message)
        ]

    def next(self):
        """The oldest mail not read yet, waiting for one to come."""
        key, message = wait_for(
            f"a mail to {self.address}",
            lambda: (self.unread() or [None])[0],
            deadline=MAIL_SECONDS,
            every=0.2,
        )
        self.read.add(key)
        return Mail(message)


def recipients(message):
    """The envelope recipients aiosmtpd recorded (`X-RcptTo`), lower-case."""
    return [r.strip().lower() for r in str(message.get("X-RcptTo", "")).split(",")]


def _arrival(key):
    """The order of a Maildir message: its name starts with the time it was added."""
    found = re.match(r"(\d+)\.M(\d+)P\d+Q(\d+)", key)
    return tuple(int(g) for g in found.groups()) if found else (0, 0, 0)


class SmtpServer:
    """aiosmtpd, run as `python -m aiosmtpd` with its Maildir handler: every message it
    accepts is a file in `maildir`."""

    def __init__(self, port):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="smtp-", dir=os.environ.get("COMPAT_WORK") or None)
        self.maildir = os.path.join(self.dir, "maildir")
        self.log_path = os.path.join(self.dir, "aiosmtpd.log")
        self.proc = None
        self.inboxes = {}

    def start(self):
        missing = subprocess.run(
            [sys.executable, "-c", "import aiosmtpd"], capture_output=True, text=True
        )
        if missing.returncode != 0:
            raise AssertionError(
                f"aiosmtpd is missing in {sys.prefix}: run the suite with scripts/test-compat, "
                f"which installs it into the official CLI's venv\n{missing.stderr}"
            )
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "aiosmtpd", "-n",
                "-l", f"127.0.0.1:{self.port}",
                "-c", "aiosmtpd.handlers.Mailbox", self.maildir,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()

        def greets():
            if self.proc.poll() is not None:
                raise AssertionError(self._failed("exited"))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    return s.recv(64).startswith(b"220")
            except OSError:
                return False

        try:
            wait_for("the SMTP server (aiosmtpd) to greet", greets, deadline=30, every=0.1)
        except AssertionError as e:
            raise AssertionError(self._failed(str(e))) from e

    def _failed(self, why):
        try:
            with open(self.log_path, errors="replace") as f:
                log = f.read()
        except OSError:
            log = ""
        return (
            f"the SMTP server (aiosmtpd on 127.0.0.1:{self.port}) did not start ({why}); "
            f"run the suite with scripts/test-compat, which installs aiosmtpd\n{log}"
        )

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def messages(self):
        """Every message received, oldest first: (key, message)."""
        if not os.path.isdir(os.path.join(self.maildir, "new")):
            return []
        box = mailbox.Maildir(self.maildir, factory=None, create=False)
        found = []
        for key in sorted(box.keys(), key=_arrival):
            try:
                with box.get_file(key) as f:
                    message = email.message_from_binary_file(f, policy=email.policy.compat32)
                found.append((key, message))
            except (KeyError, FileNotFoundError):
                pass
        return found

    def inbox(self, address):
        """The inbox of `address` (one per address: what a test read stays read)."""
        return self.inboxes.setdefault(address.lower(), Inbox(self, address))


# --- the platform without the CLI ---------------------------------------------------------


def anonymous(platform, method, path, body=None):
    """The platform's API without credentials: (status, JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(platform.url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    return _open(req, json.loads)


def open_link(url):
    """GETs a link from a mail, as a browser would: (status, text)."""
    return _open(urllib.request.Request(url), lambda raw: raw.decode())


def _open(req, parse):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=60) as resp:
            return resp.status, parse(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, parse(e.read() or b"null")


def use_official_key(user):
    """Gives `machine localhost` (what the CLI's HTTP library reads for the platform) the
    key the official CLI saved under `machine api.gigalixir.com`."""
    hosts = user.netrc_hosts()
    hosts["localhost"] = hosts["api.gigalixir.com"]
    with open(user.netrc_path, "w") as f:
        for host, (login, key) in sorted(hosts.items()):
            f.write(f"machine {host}\n\tlogin {login}\n\tpassword {key}\n")
    os.chmod(user.netrc_path, 0o600)


def official_login(user, *extra):
    """The official `login` (email and password, and `extra`), then its key for the
    platform's host."""
    r = user.official("login", "-e", user.email, "-p", user.password, "-y", *extra)
    if r.code != 0 or r.message != f"Logged in as {user.email}.":
        raise AssertionError(str(r))
    use_official_key(user)
    return r


def confirmed_user(platform, address, password):
    """An account made through the API (`POST /api/users`), confirmed with the link of the
    mail it got, logged in with the official CLI."""
    account = {"email": address, "password": password}
    status, body = anonymous(platform, "POST", "/api/users", account)
    if status != 201 or body["data"]["email_confirmed"]:
        raise AssertionError(f"POST /api/users {address}: {status} {body}")
    mail = SMTP.inbox(address).next()
    status, text = open_link(mail.link)
    if status != 200:
        raise AssertionError(f"{mail.link}: {status} {text}")
    user = User(platform, address, password)
    official_login(user)
    return user


# --- the official CLI at a keyboard -------------------------------------------------------


class Finished:
    """What `harness.Result` reads of a finished process."""

    def __init__(self, code, out, err):
        self.returncode = code
        self.stdout = out
        self.stderr = err


class Dialogue:
    """The official CLI run as someone typing answers: each line is written after the
    prompt that asks for it is shown. Its stdout and stderr are read as they come. Run in
    a session of its own, without a terminal: its hidden prompts (`getpass`) read the pipe.
    With `terminal=True` its stdin and stdout are a pseudo-terminal instead (for commands
    that draw on the terminal)."""

    def __init__(self, user, *args, terminal=False):
        self.args = [user.platform.official_cli, *args]
        self.lock = threading.Lock()
        self.chunks = {"out": [], "err": []}
        self.seen = {"out": 0, "err": 0}
        self.master = None
        env = user.official_env({"PYTHONUNBUFFERED": "1"})
        if terminal:
            self.master, slave = os.openpty()
            stdin = stdout = slave
        else:
            stdin = stdout = subprocess.PIPE
        self.proc = subprocess.Popen(
            self.args,
            cwd=user.home,
            env=env,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if terminal:
            os.close(slave)
            out_fd = self.master
        else:
            out_fd = self.proc.stdout.fileno()
        self.readers = [
            threading.Thread(target=self._pump, args=(out_fd, "out"), daemon=True),
            threading.Thread(
                target=self._pump, args=(self.proc.stderr.fileno(), "err"), daemon=True
            ),
        ]
        for t in self.readers:
            t.start()

    def _pump(self, fd, name):
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pseudo-terminal whose other side closed
                return
            if not chunk:
                return
            with self.lock:
                self.chunks[name].append(chunk)

    def text(self, name="out"):
        with self.lock:
            return b"".join(self.chunks[name]).decode(errors="replace")

    def transcript(self):
        return f"$ {' '.join(self.args)}\n--- stdout\n{self.text()}--- stderr\n{self.text('err')}"

    def expect(self, prompt):
        """Waits for `prompt` after what was expected before, on stdout or stderr (where
        Python's `input` and `getpass` write their prompts when they see a terminal or
        none)."""

        def find():
            for name in ("out", "err"):
                at = self.text(name).find(prompt, self.seen[name])
                if at >= 0:
                    self.seen[name] = at + len(prompt)
                    return True
            return False

        def shown():
            if find():
                return True
            if self.proc.poll() is not None:
                for t in self.readers:
                    t.join(timeout=5)
                if not find():
                    raise AssertionError(
                        f"it ended (exit {self.proc.returncode}) without asking "
                        f"{prompt!r}:\n{self.transcript()}"
                    )
                return True
            return False

        try:
            wait_for(f"the prompt {prompt!r}", shown, deadline=PROMPT_SECONDS, every=0.05)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.transcript()}") from None

    def answer(self, line):
        data = (line + "\n").encode()
        if self.master is not None:
            os.write(self.master, data)
        else:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def finish(self):
        """Waits for it to end: a `harness.Result`."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=PROMPT_SECONDS)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(f"it did not end:\n{self.transcript()}") from None
        for t in self.readers:
            t.join(timeout=5)
        return Result(self.args, Finished(self.proc.returncode, self.text(), self.text("err")))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self.readers:
            t.join(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        if self.master is not None:
            try:
                os.close(self.master)
            except OSError:
                pass
            self.master = None


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text):
    """Terminal output without its colours, with plain line ends."""
    return ANSI.sub("", text).replace("\r\n", "\n")


# --- reading the QR code, making TOTP codes -----------------------------------------------

# How `qrcode`'s print_tty draws a light module, and the end of a row (the light border).
_LIGHT = "\x1b[1;47m  \x1b[40m"
_ROW_END = "\x1b[1;47m  \x1b[0m"


def qr_modules(text):
    """The QR code print_tty drew in `text`, as rows of modules (True: dark), without its
    border."""
    rows = []
    for line in text.replace("\r", "").split("\n"):
        start = line.find(_LIGHT)
        if start < 0 or not line.endswith(_ROW_END):
            continue
        body = line[start + len(_LIGHT):-len(_ROW_END)]
        row = []
        while body:
            if body.startswith(_LIGHT):
                row.append(False)
                body = body[len(_LIGHT):]
            elif body.startswith("  "):
                row.append(True)
                body = body[2:]
            else:
                raise AssertionError(f"not a row of a QR code: {line!r}")
        rows.append(row)
    if not rows or any(len(r) != len(rows) for r in rows) or (len(rows) - 17) % 4:
        raise AssertionError(f"no QR code drawn in:\n{text!r}")
    return rows


def qr_decode(modules):
    """The text of a QR code drawn without a flaw (as a terminal shows it): its data
    modules read in the standard's order, unmasked, de-interleaved and parsed. The answer
    is checked by drawing it again the way the official CLI does: it must give the same
    modules."""
    import qrcode
    from qrcode import base, util
    from qrcode.main import QRCode

    n = len(modules)
    version = (n - 17) // 4
    level = qrcode.constants.ERROR_CORRECT_L  # what the official CLI asks for
    # The function patterns, from `qrcode` itself: what is left are data modules.
    blank = QRCode(version=version, error_correction=level)
    blank.modules_count = n
    blank.modules = [[None] * n for _ in range(n)]
    blank.setup_position_probe_pattern(0, 0)
    blank.setup_position_probe_pattern(n - 7, 0)
    blank.setup_position_probe_pattern(0, n - 7)
    blank.setup_position_adjust_pattern()
    blank.setup_timing_pattern()
    blank.setup_type_info(False, 0)
    if version >= 7:
        blank.setup_type_number(False)
    order = []
    row, step = n - 1, -1
    for col in range(n - 1, 0, -2):
        if col <= 6:
            col -= 1
        while True:
            for c in (col, col - 1):
                if blank.modules[row][c] is None:
                    order.append((row, c))
            row += step
            if row < 0 or row >= n:
                row -= step
                step = -step
                break
    blocks = base.rs_blocks(version, level)
    for mask in range(8):
        masked = util.mask_func(mask)
        bits = [modules[r][c] != masked(r, c) for r, c in order]
        words = [
            int("".join("1" if b else "0" for b in bits[i:i + 8]), 2)
            for i in range(0, len(bits) - 7, 8)
        ]
        per_block = [[] for _ in blocks]
        at = 0
        for i in range(max(b.data_count for b in blocks)):
            for b, block in zip(blocks, per_block):
                if i < b.data_count:
                    block.append(words[at])
                    at += 1
        try:
            text = _qr_segments(bytes(sum(per_block, [])), version)
        except (ValueError, IndexError, UnicodeDecodeError):
            continue
        again = QRCode(version=1, error_correction=level, box_size=10, border=4)
        again.add_data(text)
        again.make(fit=True)
        if again.modules == modules:
            return text
    raise AssertionError("the QR code could not be read")


def _qr_segments(data, version):
    """The text of a QR code's data codewords (numeric, alphanumeric and byte segments)."""
    bits = "".join(f"{b:08b}" for b in data)
    pos = 0

    def take(count):
        nonlocal pos
        if pos + count > len(bits):
            raise ValueError("past the end")
        value = int(bits[pos:pos + count], 2)
        pos += count
        return value

    size = 0 if version < 10 else 1 if version < 27 else 2
    alphanumeric = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
    out = bytearray()
    while pos + 4 <= len(bits):
        mode = take(4)
        if mode == 0:
            break
        if mode == 1:
            count = take((10, 12, 14)[size])
            while count > 0:
                digits = min(count, 3)
                out += str(take((4, 7, 10)[digits - 1])).zfill(digits).encode()
                count -= digits
        elif mode == 2:
            count = take((9, 11, 13)[size])
            while count >= 2:
                value = take(11)
                out += (alphanumeric[value // 45] + alphanumeric[value % 45]).encode()
                count -= 2
            if count:
                out += alphanumeric[take(6)].encode()
        elif mode == 4:
            count = take((8, 16, 16)[size])
            out += bytes(take(8) for _ in range(count))
        else:
            raise ValueError(f"mode {mode}")
    return out.decode()


def totp(secret, step):
    """The RFC 6238 code (SHA-1, 6 digits, 30 s) of `secret` (base32) for time step
    `step`, as an authenticator app computes it."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


class Authenticator:
    """An authenticator app: the code of the current time step, never one of a step
    already used (the platform takes each step once, and one step either side of now)."""

    def __init__(self, url):
        parsed = urllib.parse.urlparse(url)
        self.secret = urllib.parse.parse_qs(parsed.query)["secret"][0]
        self.last = -1

    def code(self):
        now = int(time.time()) // 30
        step = max(now, self.last + 1)
        if step > now + 1:
            time.sleep((step - 1) * 30 - time.time() + 0.5)
        self.last = step
        return totp(self.secret, step)


# --- the tests ----------------------------------------------------------------------------


class Case(Checks, unittest.TestCase):
    """Each class has a platform of its own, which confirms emails and mails them to the
    module's SMTP server: its own data, and its own counts of failed attempts and mails
    (the platform holds back an address after 30 failures in 5 minutes)."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.platform = Platform(
            args=["--smtp-url", f"smtp://127.0.0.1:{SMTP.port}"],
            env={"GIGALIXIR_NO_EMAIL_CONFIRMATION": "false"},
            data=f"data-accounts-{cls.__name__.lower()}",
        )
        cls.addClassCleanup(cls.platform.stop)
        cls.platform.start()

    def account(self, user):
        return self.ok(user.official("account")).json()

    def no_mail(self, address):
        """Nothing came for `address` (mail is sent before the API answers)."""
        self.assertEqual(SMTP.inbox(address).unread(), [])


class Signup(Case):
    def test_signup_reads_the_code_from_the_mail_and_logs_in(self):
        address = "signup@example.com"
        user = User(self.platform, address, "a signup password")
        cli = Dialogue(user, "signup")
        self.addCleanup(cli.close)
        cli.expect("Email:")
        cli.answer(address)
        mail = SMTP.inbox(address).next()
        self.assertEqual(mail.subject, "Confirm your email")
        cli.expect("Please check your email for the confirmation code we have sent you.")
        # A wrong code is asked again.
        cli.expect("Confirmation code:")
        cli.answer("0000000000")
        cli.expect("Confirmation code:")
        cli.answer(mail.code)
        cli.expect("Thank you for your trust in us.")
        cli.expect("Password:")
        cli.answer(user.password)
        cli.expect("Promo code [enter to skip]:")
        cli.answer("")
        cli.expect("Tier:")
        cli.answer("1")
        cli.expect(f"You are about to signup for the FREE tier.\n  Email: {address}")
        cli.expect("Do you wish to proceed? [Y/n]:")
        cli.answer("y")
        r = self.ok(cli.finish())
        self.assertTrue(r.out.endswith("Welcome to Gigalixir!\n"), str(r))

        hosts = user.netrc_hosts()
        self.assertEqual(sorted(hosts), ["api.gigalixir.com", "git.gigalixir.com"])
        self.assertEqual(hosts["api.gigalixir.com"][0], address)
        use_official_key(user)
        data = self.account(user)
        self.assertEqual(
            (data["email"], data["tier"], data["email_confirmed"], data["mfa_active"]),
            (address, "FREE", True, False),
        )
        official_login(user)

        # The email is taken now: a second sign-up stops at its first step.
        again = User(self.platform, address, "another password")
        r = again.official("signup", stdin_text=address + "\n")
        self.assertEqual(r.code, 1, str(r))
        self.assertEqual(r.message, '{"errors":{"email":["has already been taken"]}}', str(r))
        self.no_mail(address)


class Confirmation(Case):
    def test_login_waits_for_the_link_in_the_mail(self):
        address = "confirm-link@example.com"
        password = "a confirmation password"
        account = {"email": address, "password": password}
        status, body = anonymous(self.platform, "POST", "/api/users", account)
        self.assertEqual(status, 201, body)
        self.assertFalse(body["data"]["email_confirmed"], body)
        first = SMTP.inbox(address).next()
        self.assertEqual(first.subject, "Confirm your email")
        self.assertIn(f"Or open this link to confirm {address}:", first.body)
        self.assertTrue(
            first.link.startswith(f"{self.platform.url}/api/users/confirm?token="), first.body
        )

        user = User(self.platform, address, password)
        self.fails_with(
            user.official("login", "-e", address, "-p", password, "-y"),
            '{"errors":{"":["Confirm your email first: open the link in the mail we sent '
            '(resend it with `gigalixir account:confirmation:resend`)."]}}',
        )
        self.assertEqual(user.netrc_hosts(), {})

        r = self.ok(user.official("account:confirmation:resend", "-e", address))
        self.assertEqual(r.message, "Confirmation email sent.")
        second = SMTP.inbox(address).next()
        self.assertNotEqual(second.link, first.link)
        invalid = (
            "This link is invalid, already used or expired. Ask for a new one with "
            "`gigalixir account:confirmation:resend`.\n"
        )
        # The new mail's token replaced the first one.
        status, text = open_link(first.link)
        self.assertEqual((status, text), (422, invalid))
        self.assertEqual(
            open_link(second.link), (200, f"{address} is confirmed: you can log in now.\n")
        )
        self.assertEqual(open_link(second.link), (422, invalid))

        official_login(user)
        self.assertTrue(self.account(user)["email_confirmed"])
        # A confirmed account, or an unknown email, gets the same answer and no mail.
        for other in (address, "nobody-confirms@example.com"):
            r = self.ok(user.official("account:confirmation:resend", "-e", other))
            self.assertEqual(r.message, "Confirmation email sent.")
            self.no_mail(other)


class PasswordReset(Case):
    def test_reset_by_mail_sets_a_new_password_once(self):
        old, new = "the forgotten password", "the new password"
        user = confirmed_user(self.platform, "reset@example.com", old)
        old_key = user.key()

        r = self.ok(user.official("account:password:reset", "-e", user.email))
        self.assertEqual(r.message, "Reset password link has been sent to your email.")
        mail = SMTP.inbox(user.email).next()
        self.assertEqual(mail.subject, "Reset your password")
        self.assertIn(
            f"gigalixir account:password:set --token {mail.token} --password NEW_PASSWORD",
            mail.body,
        )

        r = self.ok(user.official("account:password:set", "-t", mail.token, "-p", new))
        self.assertEqual((r.out, r.message), ("", ""))
        self.fails_with(
            user.official("login", "-e", user.email, "-p", old, "-y"), refused_login(user.email)
        )
        user.password = new
        official_login(user)
        self.assertEqual(self.account(user)["email"], user.email)
        # Every key made before the reset is revoked.
        self.assertEqual(user.api("GET", "/api/users", key=old_key)[0], 401)

        self.fails_with(
            user.official("account:password:set", "-t", mail.token, "-p", "a third password"),
            '{"errors":{"token":["is invalid, already used or expired: ask for a new one"]}}',
        )
        official_login(user)

        # An unknown email gets the same answer, and nothing is mailed.
        r = self.ok(user.official("account:password:reset", "-e", "nobody-resets@example.com"))
        self.assertEqual(r.message, "Reset password link has been sent to your email.")
        self.no_mail("nobody-resets@example.com")


class PasswordChange(Case):
    def test_change_needs_the_password_and_keeps_only_the_callers_key(self):
        old, new = "the first password", "the second password"
        user = confirmed_user(self.platform, "change@example.com", old)
        # A key of another machine (a login elsewhere).
        status, body = anonymous_login(self.platform, user.email, old)
        self.assertEqual(status, 200, body)
        elsewhere = body["data"]["key"]
        self.assertEqual(user.api("GET", "/api/users", key=elsewhere)[0], 200)

        self.fails_with(
            user.official("account:password:change", "-p", "not the password", "-n", new),
            NO_ACCESS,
        )
        r = self.ok(user.official("account:password:change", "-p", old, "-n", new))
        self.assertEqual(
            r.json(),
            {"message": "Password changed; every other API key of the account is revoked."},
        )
        self.assertEqual(self.account(user)["email"], user.email)
        self.assertEqual(user.api("GET", "/api/users", key=elsewhere)[0], 401)
        self.fails_with(
            user.official("login", "-e", user.email, "-p", old, "-y"), refused_login(user.email)
        )
        user.password = new
        official_login(user)


class EmailChange(Case):
    def test_a_new_email_counts_once_its_link_is_opened(self):
        before, after = "before@example.com", "after@example.com"
        user = confirmed_user(self.platform, before, "an email-changing password")

        self.fails_with(user.official("account:email:set", "-p", "wrong", "-e", after), NO_ACCESS)
        self.no_mail(after)
        r = self.ok(user.official("account:email:set", "-p", user.password, "-e", after))
        self.assertEqual(r.message, "Confirmation email sent. Please check your email to continue.")
        mail = SMTP.inbox(after).next()
        self.assertEqual(mail.subject, "Confirm your new email")
        self.assertIn(f"to make {after} the email of your account (now {before})", mail.body)
        self.no_mail(before)

        # Until the link is opened, the account keeps its email.
        self.assertEqual(self.account(user)["email"], before)
        self.fails_with(
            user.official("login", "-e", after, "-p", user.password, "-y"), refused_login(after)
        )
        self.assertEqual(open_link(mail.link), (200, f"Your account's email is now {after}.\n"))

        self.fails_with(
            user.official("login", "-e", before, "-p", user.password, "-y"), refused_login(before)
        )
        user.email = after
        official_login(user)
        self.assertEqual(self.account(user)["email"], after)


def anonymous_login(platform, address, password):
    """`GET /api/login` with Basic email:password, as another machine logs in."""
    req = urllib.request.Request(platform.url + "/api/login")
    token = base64.b64encode(f"{address}:{password}".encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    return _open(req, json.loads)


class Mfa(Case):
    def test_totp_then_recovery_codes_then_off(self):
        user = confirmed_user(self.platform, "mfa@example.com", "a second-factor password")

        # It draws the QR code on the terminal and asks for a code from it.
        cli = Dialogue(user, "account:mfa:activate", "-y", terminal=True)
        self.addCleanup(cli.close)
        cli.expect("Multi-factor Authentication Token:")
        url = qr_decode(qr_modules(cli.text()))
        label = urllib.parse.unquote(urllib.parse.urlparse(url).path)
        self.assertTrue(url.startswith("otpauth://totp/"), url)
        self.assertEqual(label, f"/GIGALIXIR-PaaS:{user.email}")
        app = Authenticator(url)
        cli.answer(app.code())
        r = self.ok(cli.finish())
        # (Python's `input` writes its prompt to stderr when it sees a terminal.)
        self.assertEqual(
            r.message.splitlines(),
            [
                "Add this account to your authenticator app (the QR code, or the otpauth:// "
                "URL or its secret), then enter the code it shows.",
                "Multi-factor Authentication Token: ",
            ],
        )
        shown = plain(r.out)
        done = "Multi-factor authentication is active: login asks for a code from now on.\n"
        self.assertIn(done, shown)
        first_codes = json.loads(shown[shown.index(done) + len(done):])
        self.assertEqual(len(first_codes), 10, shown)
        self.assertTrue(self.account(user)["mfa_active"])

        # A code with -t (the next time step's: the platform takes each step once).
        code = app.code()
        official_login(user, "-t", code)
        # The same code again, or a wrong one, is refused.
        for wrong in (code, "000000"):
            self.fails_with(
                user.official("login", "-e", user.email, "-p", user.password, "-y", "-t", wrong),
                refused_login(user.email),
            )
        # Without -t it asks; with nobody at the prompt it stops, and saves nothing.
        saved = user.netrc_hosts()
        r = user.official("login", "-e", user.email, "-p", user.password, "-y")
        self.assertEqual(r.code, 1, str(r))
        self.assertEqual(r.out, "Multi-factor Authentication Token: ", str(r))
        self.assertEqual(user.netrc_hosts(), saved)
        # A recovery code typed at that prompt.
        r = self.ok(
            user.official(
                "login", "-e", user.email, "-p", user.password, "-y",
                stdin_text=first_codes[0] + "\n",
            )
        )
        self.assertEqual(r.message, f"Logged in as {user.email}.")

        # New recovery codes replace the ones shown at activation; each works once.
        r = self.ok(user.official("account:mfa:recovery_codes:regenerate", "-y"))
        codes = r.json()
        self.assertEqual(len(codes), 10, codes)
        self.assertFalse(set(codes) & set(first_codes))
        self.fails_with(
            user.official(
                "login", "-e", user.email, "-p", user.password, "-y", "-t", first_codes[1]
            ),
            refused_login(user.email),
        )
        official_login(user, "-t", codes[0])
        self.fails_with(
            user.official("login", "-e", user.email, "-p", user.password, "-y", "-t", codes[0]),
            refused_login(user.email),
        )

        r = self.ok(user.official("account:mfa:deactivate", "-y"))
        self.assertEqual(r.out, "Multi-factor authentication is deactivated.\n")
        self.assertFalse(self.account(user)["mfa_active"])
        official_login(user)
        self.fails_with(
            user.official("account:mfa:recovery_codes:regenerate", "-y"),
            '{"errors":{"mfa":["is not active"]}}',
        )


class Access(Case):
    def test_viewers_see_collaborators_change_the_owner_decides(self):
        app = "acct-shared"
        owner = confirmed_user(self.platform, "owner@example.com", "the owner's password")
        viewer = confirmed_user(self.platform, "viewer@example.com", "the viewer's password")
        partner = confirmed_user(
            self.platform, "collaborator@example.com", "the collaborator's password"
        )
        repo = self.platform.fixture_repo(owner, "hello")
        self.ok(owner.official("create", "-n", app, cwd=repo))

        def access():
            return [
                (p["email"], p["role"]) for p in self.ok(owner.official("access", "-a", app)).json()
            ]

        def names(user):
            return [a["unique_name"] for a in self.ok(user.official("apps")).json()]

        self.assertEqual(access(), [(owner.email, "OWNER")])
        r = self.ok(owner.official("access:add", "-a", app, viewer.email, "--role", "VIEWER"))
        self.assertEqual((r.out, r.message), ("", ""))
        self.ok(owner.official("access:add", "-a", app, partner.email, "--role", "COLLABORATOR"))
        self.assertEqual(
            access(),
            [(owner.email, "OWNER"), (viewer.email, "VIEWER"), (partner.email, "COLLABORATOR")],
        )
        self.fails_with(
            owner.official("access:add", "-a", app, "nobody-shares@example.com"),
            '{"errors":{"email":["`nobody-shares@example.com` has no account here (they sign '
            'up first, with `gigalixir signup`)"]}}',
        )

        # A viewer sees the app, not its config.
        self.assertEqual(names(viewer), [app])
        info = self.ok(viewer.official("apps:info", "-a", app)).json()
        self.assertEqual(info["unique_name"], app)
        refused = '{"errors":{"":["As a viewer of `%s` you may not change it."]}}' % app
        self.fails_with(viewer.official("config", "-a", app), refused)
        self.fails_with(viewer.official("config:set", "-a", app, "FOO=bar"), refused)

        # A collaborator changes it, and may not give access.
        r = self.ok(partner.official("config:set", "-a", app, "GREETING=hi"))
        self.assertEqual(r.json(), {"GREETING": "hi"})
        self.assertEqual(self.ok(owner.official("config", "-a", app)).json(), {"GREETING": "hi"})
        self.fails_with(
            partner.official("access:add", "-a", app, viewer.email, "--role", "COLLABORATOR"),
            '{"errors":{"":["As a collaborator of `%s` you may not do this to it: only its '
            'owner may."]}}' % app,
        )

        r = self.ok(owner.official("access:remove", "-a", app, viewer.email))
        self.assertEqual((r.out, r.message), ("", ""))
        self.assertEqual(access(), [(owner.email, "OWNER"), (partner.email, "COLLABORATOR")])
        self.assertEqual(names(viewer), [])
        self.fails_with(
            viewer.official("apps:info", "-a", app),
            '{"errors":{"":["App `%s` not found."]}}' % app,
        )
        self.fails_with(
            owner.official("access:remove", "-a", app, viewer.email),
            '{"errors":{"email":["`%s` has no access to this app"]}}' % viewer.email,
        )

        activity = self.ok(owner.official("apps:activity", "-a", app)).json()
        self.assertEqual(
            [(a["actor"], a["action"], a["detail"]) for a in activity],
            [
                (owner.email, "access:remove", viewer.email),
                (partner.email, "config:set", "Set GREETING"),
                (owner.email, "access:add", f"{partner.email} as COLLABORATOR"),
                (owner.email, "access:add", f"{viewer.email} as VIEWER"),
            ],
        )


class Destroy(Case):
    def test_account_destroy_needs_email_password_and_no_apps(self):
        user = confirmed_user(self.platform, "leaving@example.com", "a parting password")
        key = user.key()
        warning = "WARNING: Deleting an account can not be undone."
        repo = self.platform.fixture_repo(user, "hello")
        self.ok(user.official("create", "-n", "acct-leaving", cwd=repo))

        r = user.official("account:destroy", "-y", "-e", user.email, "-p", user.password)
        self.assertEqual(r.code, 1, str(r))
        self.assertTrue(
            r.message.startswith(
                warning + '\n{"errors":{"email":["the account owns 1 app(s): acct-leaving.'
            ),
            str(r),
        )
        self.fails_with(
            user.official(
                "account:destroy", "-y", "-e", "someone-else@example.com", "-p", user.password
            ),
            warning + '\n{"errors":{"email":["is not this account\'s email"]}}',
        )
        self.fails_with(
            user.official("account:destroy", "-y", "-e", user.email, "-p", "wrong"),
            warning + "\n" + NO_ACCESS,
        )
        self.assertEqual(self.account(user)["email"], user.email)

        self.ok(user.official("apps:destroy", "-a", "acct-leaving", "-y"))
        r = self.ok(user.official("account:destroy", "-y", "-e", user.email, "-p", user.password))
        self.assertEqual(r.message, warning + "\nAccount destroyed.")
        self.fails_with(
            user.official("login", "-e", user.email, "-p", user.password, "-y"),
            refused_login(user.email),
        )
        self.assertEqual(user.api("GET", "/api/users", key=key)[0], 401)
        self.fails_with(user.official("account"), NO_ACCESS)


if __name__ == "__main__":
    unittest.main(verbosity=2)
