# SPDX-License-Identifier: Apache-2.0
"""Real registries on loopback for the image tests, and what goes around them.

Debian packages: docker-registry (/usr/bin/docker-registry, distribution 2.8),
python3-cryptography (test CA, TLS and token-signing certificates),
python3-jwt (RS256 tokens), python3-bcrypt (the htpasswd file).

  TestCA          a CA with server certificates (SAN IP:127.0.0.1, DNS:localhost)
  Registry        `docker-registry serve` on 127.0.0.1:<free port>, filesystem storage
                  in a temporary directory, deleting enabled; kinds: plain HTTP, TLS,
                  htpasswd Basic auth, token auth
  TokenServer     the token realm for a token-auth Registry: RS256 JWTs with x5c
  RegistryProxy   an HTTP/1.1 loopback proxy in front of a registry that counts
                  requests, records Range headers, and can cut, hold, throttle or
                  rewrite a response body, or answer everything with an error (a
                  broken mirror)
  closed_port()   a port nothing listens on (a dead mirror)

Everything binds 127.0.0.1 on ephemeral ports and logs into its own temp dir.
"""
import base64
import collections
import datetime
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

from imagebuild import RegistryClient

DOCKER_REGISTRY = "/usr/bin/docker-registry"
START_TIMEOUT = 20.0


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ClosedPort:
    """A loopback port bound but never listening: connecting is refused. Holding the
    socket keeps anyone else from taking the port while a test uses it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.host = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.host

    def close(self):
        self.sock.close()


def closed_port():
    return ClosedPort()


# --------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------

class TestCA:
    """A throw-away CA in `directory`: ca.pem, and certificates it issues."""

    __test__ = False  # not a pytest class

    def __init__(self, directory):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tinycri test CA")])
        now = datetime.datetime.utcnow()
        self.cert = (x509.CertificateBuilder()
                     .subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                                  crl_sign=True, content_commitment=False,
                                                  key_encipherment=False, data_encipherment=False,
                                                  key_agreement=False, encipher_only=False,
                                                  decipher_only=False), critical=True)
                     .add_extension(
                         x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                         critical=False)
                     .sign(self.key, hashes.SHA256()))
        self.ca_file = os.path.join(directory, "ca.pem")
        with open(self.ca_file, "wb") as f:
            f.write(self.pem(self.cert))

    @staticmethod
    def pem(cert):
        from cryptography.hazmat.primitives import serialization
        return cert.public_bytes(serialization.Encoding.PEM)

    @staticmethod
    def key_pem(key):
        from cryptography.hazmat.primitives import serialization
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())

    def issue(self, name, server=True, key=None, dns=("localhost",), ips=("127.0.0.1", "::1")):
        """A leaf certificate: writes <name>.pem and <name>-key.pem; returns
        (cert_path, key_path, cert, key)."""
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = key or ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.utcnow()
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(self.cert.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.key.public_key()), critical=False))
        if server:
            sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i))
                                                     for i in ips]
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        cert_path = os.path.join(self.dir, name + ".pem")
        key_path = os.path.join(self.dir, name + "-key.pem")
        with open(cert_path, "wb") as f:
            f.write(self.pem(cert))
        with open(key_path, "wb") as f:
            f.write(self.key_pem(key))
        os.chmod(key_path, 0o600)
        return cert_path, key_path, cert, key


# --------------------------------------------------------------------------
# Token server
# --------------------------------------------------------------------------

class TokenServer:
    """A Docker token realm (GET /token with Basic credentials, and the OAuth2 POST
    /token form with grant_type=password or refresh_token).

    Tokens are RS256 JWTs whose header carries x5c = [the signing certificate, base64
    DER], issued by `ca` (the registry's rootcertbundle). Valid credentials get every
    action they ask for; no credentials get a token with no access (as Docker Hub
    does); wrong credentials get 401. offline_token=true with valid credentials also
    returns refresh_token (the fixed self.refresh_token)."""

    service = "tinycri-test-registry"
    issuer = "tinycri-test-token-server"

    def __init__(self, ca, username, password, ttl=300):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.username, self.password, self.ttl = username, password, ttl
        self.refresh_token = "tc-refresh-" + secrets.token_hex(8)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _, _, cert, _ = ca.issue("token-signer", server=False, key=key)
        self.key_pem = TestCA.key_pem(key)
        self.x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.lock = threading.Lock()
        self.token_requests = 0
        self.requests = []  # (method, path, user or None, scopes, status)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                outer._handle(self, u.path, q, self._basic())

            def do_POST(self):
                u = urllib.parse.urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                outer._handle_post(self, u.path, form)

            def _basic(self):
                h = self.headers.get("Authorization") or ""
                if not h.lower().startswith("basic "):
                    return None
                try:
                    user, _, pw = base64.b64decode(h[6:].strip()).decode().partition(":")
                except Exception:
                    return ("", "")
                return (user, pw)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.realm = "http://127.0.0.1:%d/token" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       name="token-server")
        self.thread.start()

    # -- tokens -------------------------------------------------------------------

    def mint(self, scopes, subject="", ttl=None):
        """A signed token granting the actions in scopes ("repository:busybox:pull")."""
        import jwt  # python3-jwt
        now = int(time.time())
        access = []
        for s in scopes:
            parts = s.split(":")
            if len(parts) < 3:
                continue
            typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            access.append({"type": typ, "name": name,
                           "actions": [a for a in actions.split(",") if a]})
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service,
                  "exp": now + (ttl or self.ttl), "nbf": now - 30, "iat": now,
                  "jti": secrets.token_hex(12), "access": access}
        tok = jwt.encode(claims, self.key_pem, algorithm="RS256", headers={"x5c": self.x5c})
        return tok.decode() if isinstance(tok, bytes) else tok

    def _reply(self, h, status, obj, extra_headers=()):
        body = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _grant(self, h, path, user, scopes, authorized, offline=False):
        with self.lock:
            self.token_requests += 1
        if path != "/token":
            self.requests.append(("GET", path, user, scopes, 404))
            return self._reply(h, 404, {"error": "not found"})
        if not authorized:
            self.requests.append(("GET", path, user, scopes, 401))
            return self._reply(h, 401, {"errors": [{"code": "UNAUTHORIZED",
                                                    "message": "bad credentials"}]},
                               [("WWW-Authenticate", 'Basic realm="tinycri-token"')])
        granted = scopes if user is not None else []
        tok = self.mint(granted, subject=user or "")
        resp = {"token": tok, "access_token": tok, "expires_in": self.ttl,
                "issued_at": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "scope": " ".join(granted)}
        if offline and user is not None:
            resp["refresh_token"] = self.refresh_token
        self.requests.append(("GET", path, user, scopes, 200))
        return self._reply(h, 200, resp)

    def _scopes(self, values):
        out = []
        for v in values:
            out += [s for s in v.split(" ") if s]
        return out

    def _handle(self, h, path, q, creds):
        scopes = self._scopes(q.get("scope", []))
        offline = (q.get("offline_token") or ["false"])[0] == "true"
        if creds is None:
            return self._grant(h, path, None, scopes, True)
        ok = creds == (self.username, self.password)
        return self._grant(h, path, creds[0] if ok else None, scopes, ok, offline)

    def _handle_post(self, h, path, form):
        scopes = self._scopes(form.get("scope", []))
        grant = (form.get("grant_type") or [""])[0]
        if grant == "refresh_token":
            ok = (form.get("refresh_token") or [""])[0] == self.refresh_token
            return self._grant(h, path, self.username if ok else None, scopes, ok, ok)
        if grant == "password":
            creds = ((form.get("username") or [""])[0], (form.get("password") or [""])[0])
            ok = creds == (self.username, self.password)
            return self._grant(h, path, creds[0] if ok else None, scopes, ok, ok)
        with self.lock:
            self.token_requests += 1
        return self._reply(h, 400, {"error": "unsupported_grant_type"})

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------
# Registries
# --------------------------------------------------------------------------

ACCESS_LOG = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3}) ')


class Registry:
    """One `docker-registry serve` process.

    kind: "plain" (HTTP), "tls" (HTTPS with a cert from ca), "basic" (HTTP + htpasswd),
    "token" (HTTP + token auth against a TokenServer).

    Attributes: .host "127.0.0.1:PORT", .port, .url, .scheme, .kind, .dir (temp dir),
    .log_path, .ca_file (TLS only, else None), .username/.password (basic and token,
    else None), .token_server (token only), .token_requests (token only, a count)."""

    def __init__(self, kind="plain", ca=None, username="tcuser", password="tc-s3cret!"):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix="tc-registry-%s-" % kind, dir="/tmp")
        self.storage = os.path.join(self.dir, "storage")
        self.config_path = os.path.join(self.dir, "config.yml")
        self.log_path = os.path.join(self.dir, "registry.log")
        self.scheme = "https" if kind == "tls" else "http"
        self.ca_file = None
        self.username = self.password = None
        self.token_server = None
        self.proc = None
        self._pushed = {}
        self._lock = threading.Lock()
        auth = None
        tls = None
        if kind == "tls":
            cert, key, _, _ = ca.issue("registry-server")
            tls = {"certificate": cert, "key": key}
            self.ca_file = ca.ca_file
        elif kind == "basic":
            import bcrypt  # python3-bcrypt
            self.username, self.password = username, password
            htpasswd = os.path.join(self.dir, "htpasswd")
            h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
            with open(htpasswd, "w") as f:
                f.write("%s:%s\n" % (username, h))
            auth = {"htpasswd": {"realm": "tinycri-basic", "path": htpasswd}}
        elif kind == "token":
            self.username, self.password = username, password
            self.token_server = TokenServer(ca, username, password)
            auth = {"token": {"realm": self.token_server.realm,
                              "service": TokenServer.service,
                              "issuer": TokenServer.issuer,
                              "rootcertbundle": ca.ca_file}}
        elif kind != "plain":
            raise ValueError(kind)
        self._auth, self._tls = auth, tls
        self.start()

    @property
    def token_requests(self):
        return self.token_server.token_requests if self.token_server else 0

    def _config(self, port):
        http_cfg = {"addr": "127.0.0.1:%d" % port, "secret": secrets.token_hex(16),
                    "headers": {"X-Content-Type-Options": ["nosniff"]}}
        if self._tls:
            http_cfg["tls"] = self._tls
        cfg = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text",
                    "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": self.storage},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": http_cfg,
        }
        if self._auth:
            cfg["auth"] = self._auth
        return cfg

    def start(self):
        """Start on a free port (retrying if another process took it meanwhile) and
        wait until GET /v2/ answers."""
        last = ""
        for _ in range(5):
            self.port = free_port()
            self.host = "127.0.0.1:%d" % self.port
            self.url = "%s://%s" % (self.scheme, self.host)
            with open(self.config_path, "w") as f:
                json.dump(self._config(self.port), f, indent=2)  # JSON is YAML
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([DOCKER_REGISTRY, "serve", self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         close_fds=True, start_new_session=True,
                                         env=_registry_env())
            log.close()
            ok, last = self._wait_ready()
            if ok:
                return self
            self.stop()
            if "address already in use" not in last:
                break
        raise RuntimeError("docker-registry (%s) did not start: %s\n--- %s ---\n%s"
                           % (self.kind, last, self.log_path, self.log_text()[-4000:]))

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        client = RegistryClient(self.url, ca_file=self.ca_file, timeout=2)
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, "exited with status %d; %s" % (self.proc.returncode,
                                                            self.log_text()[-2000:])
            try:
                st, _, _ = client._raw("GET", self.url + "/v2/")
                if st in (200, 401):
                    return True, ""
                last = "GET /v2/ -> %d" % st
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        return False, "timed out: " + last

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self, keep_files=False):
        self.stop()
        if self.token_server:
            self.token_server.close()
        if not keep_files:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def access_log(self):
        """[(method, uri, status)] from the registry's access log, in order."""
        return [(m.group(1), m.group(2), int(m.group(3)))
                for m in ACCESS_LOG.finditer(self.log_text())]

    def blob_gets(self, digest):
        """How many GETs of this blob the registry has served (any status)."""
        return sum(1 for m, uri, _ in self.access_log()
                   if m == "GET" and uri.split("?")[0].endswith("/blobs/" + digest))

    # -- clients and pushes ----------------------------------------------------------

    def client(self, authenticated=True, token=None):
        if authenticated and self.username:
            return RegistryClient(self.url, self.username, self.password, token=token,
                                  ca_file=self.ca_file)
        return RegistryClient(self.url, token=token, ca_file=self.ca_file)

    def push(self, repo, tag, obj):
        """Push an imagebuild Image or Index as repo:tag; returns the manifest digest."""
        return self.client().push(repo, tag, obj)

    def ensure(self, repo, tag, obj):
        """push() once per (repo, tag, manifest digest) for the registry's lifetime."""
        key = (repo, tag, obj.manifest.digest)
        with self._lock:
            if key not in self._pushed:
                self._pushed[key] = self.push(repo, tag, obj)
            return self._pushed[key]

    def ref(self, repo, tag="latest"):
        return "%s/%s:%s" % (self.host, repo, tag)

    def __repr__(self):
        return "<Registry %s %s>" % (self.kind, self.url)


def _registry_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(k, None)
    return env


# --------------------------------------------------------------------------
# The proxy
# --------------------------------------------------------------------------

class _Rule:
    def __init__(self, kind, match, method="GET", once=False, after=0, fn=None):
        self.kind, self.match, self.method, self.once = kind, match, method, once
        self.after, self.fn = after, fn
        self.used = 0
        self.reached = threading.Event()

    def matches(self, method, path):
        if self.once and self.used:
            return False
        if self.method and method != self.method:
            return False
        return self.match(path) if callable(self.match) else self.match in path


class _Closed(Exception):
    pass


class RegistryProxy:
    """A threaded HTTP/1.1 proxy on 127.0.0.1:<ephemeral> in front of upstream
    ("127.0.0.1:PORT", plain HTTP); with upstream=None (or fail_all(status)) it
    answers every request with an error itself: a broken mirror.

    Observations (reset() clears them):
      .requests  Counter of (method, path-without-query)
      .ranges    {path: [Range header values forwarded]}
      .log       [(method, full path, {header: value}, status)]
      .max_active_blobs  the most blob response bodies in flight at once
    Behaviours (matching by a substring of the path, e.g. a digest, or a callable):
      cut_once(match, after)  forward `after` body bytes of the first matching GET
                              response, then drop both connections
      hold(match, after)      forward `after` bytes, then wait for release();
                              returns an Event set when the hold point is reached
      rewrite(match, fn)      replace the body by fn(body) (Content-Length fixed)
      corrupt(match)          flip one byte in the body (size unchanged)
      throttle(bytes_per_s)   slow every body down
      fail_all(status)        answer everything with status (None: forward again)
    """

    def __init__(self, upstream=None, fail_status=None):
        self.upstream = upstream
        self.fail_status = fail_status if upstream else (fail_status or 404)
        self.rules = []
        self.rate = None
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.closing = False
        self.reset()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.host = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.host
        self.conns = set()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True, name="proxy")
        self.thread.start()

    # -- control -------------------------------------------------------------------

    def reset(self):
        with self.lock:
            self.requests = collections.Counter()
            self.ranges = collections.defaultdict(list)
            self.log = []
            self.active_blobs = 0
            self.max_active_blobs = 0
            self.bytes_forwarded = collections.Counter()

    def clear_rules(self):
        with self.lock:
            self.rules = []
            self.rate = None
        self.release()

    def _add(self, rule):
        with self.lock:
            self.rules.append(rule)
        return rule

    def cut_once(self, match, after):
        return self._add(_Rule("cut", match, once=True, after=after))

    def hold(self, match, after):
        self.released.clear()
        return self._add(_Rule("hold", match, once=True, after=after)).reached

    def release(self):
        self.released.set()

    def rewrite(self, match, fn, once=False, method="GET"):
        return self._add(_Rule("rewrite", match, method=method, once=once, fn=fn))

    def corrupt(self, match, once=False):
        def flip(body):
            if not body:
                return body
            i = len(body) // 2
            return body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
        return self.rewrite(match, flip, once=once)

    def throttle(self, bytes_per_second):
        self.rate = bytes_per_second

    def fail_all(self, status):
        self.fail_status = status

    # -- queries ---------------------------------------------------------------------

    def count(self, method, path_part):
        with self.lock:
            return sum(n for (m, p), n in self.requests.items()
                       if m == method and path_part in p)

    def blob_gets(self, digest):
        return self.count("GET", "/blobs/" + digest)

    def ranges_for(self, path_part):
        with self.lock:
            return [r for p, rs in self.ranges.items() if path_part in p for r in rs]

    def close(self):
        self.closing = True
        self.released.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    # -- machinery ---------------------------------------------------------------------

    def _accept_loop(self):
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns.add(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True,
                             name="proxy-conn").start()

    def _serve(self, client):
        up = None
        up_r = None
        cr = client.makefile("rb")
        try:
            while not self.closing:
                req = self._read_request(cr)
                if req is None:
                    break
                method, target, version, hlines, headers, body = req
                path = target.split("?", 1)[0]
                with self.lock:
                    self.requests[(method, path)] += 1
                    if "range" in headers:
                        self.ranges[path].append(headers["range"])
                    entry = [method, target, dict(headers), None]
                    self.log.append(entry)
                if self.fail_status:
                    entry[3] = self.fail_status
                    self._send_error(client, self.fail_status)
                    continue
                if up is None:
                    up = socket.create_connection(_split_host(self.upstream), timeout=60)
                    up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    with self.lock:
                        self.conns.add(up)
                    up_r = up.makefile("rb")
                head = ("%s %s %s\r\n" % (method, target, version)).encode() + b"".join(hlines) \
                    + b"\r\n"
                up.sendall(head + body)
                keep = self._relay_response(method, path, up_r, client, entry)
                if not keep:
                    break
        except (_Closed, OSError, ValueError):
            pass
        finally:
            for s in (client, up):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
                    with self.lock:
                        self.conns.discard(s)

    @staticmethod
    def _read_headers(r):
        lines, headers = [], {}
        while True:
            line = r.readline(65537)
            if not line:
                raise _Closed()
            if line in (b"\r\n", b"\n"):
                return lines, headers
            lines.append(line)
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()

    def _read_request(self, r):
        line = r.readline(65537)
        while line in (b"\r\n", b"\n"):
            line = r.readline(65537)
        if not line:
            return None
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        hlines, headers = self._read_headers(r)
        body = b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked_raw(r)
        elif headers.get("content-length"):
            body = _read_exact(r, int(headers["content-length"]))
        return method, target, version, hlines, headers, body

    @staticmethod
    def _read_chunked_raw(r):
        out = []
        while True:
            line = r.readline(65537)
            if not line:
                raise _Closed()
            out.append(line)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    t = r.readline(65537)
                    if not t:
                        raise _Closed()
                    out.append(t)
                    if t in (b"\r\n", b"\n"):
                        return b"".join(out)
            out.append(_read_exact(r, size + 2))

    def _send_error(self, client, status):
        body = json.dumps({"errors": [{
            "code": "UNAVAILABLE" if status >= 500 else "NOT_FOUND",
            "message": "tinycri test mirror says %d" % status}]}).encode()
        reason = {404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable",
                  401: "Unauthorized", 403: "Forbidden",
                  429: "Too Many Requests"}.get(status, "Error")
        client.sendall(("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n\r\n" % (status, reason, len(body))).encode() + body)

    def _pick_rule(self, method, path):
        with self.lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.used += 1
                    return rule
        return None

    def _relay_response(self, method, path, up_r, client, entry):
        """Forward one response; returns whether the connection may be reused."""
        while True:
            status_line = up_r.readline(65537)
            if not status_line:
                raise _Closed()
            parts = status_line.decode("latin-1").split(" ", 2)
            code = int(parts[1])
            hlines, headers = self._read_headers(up_r)
            if 100 <= code < 200 and code != 101:
                client.sendall(status_line + b"".join(hlines) + b"\r\n")
                continue
            break
        entry[3] = code
        keep = headers.get("connection", "").lower() != "close"
        no_body = method == "HEAD" or code in (204, 304)
        if no_body:
            client.sendall(status_line + b"".join(hlines) + b"\r\n")
            return keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            client.sendall(status_line + b"".join(hlines) + b"\r\n")
            client.sendall(self._read_chunked_raw(up_r))
            return keep
        if "content-length" not in headers:
            client.sendall(status_line + b"".join(hlines) + b"\r\n")
            while True:
                chunk = up_r.read1(65536)
                if not chunk:
                    return False
                client.sendall(chunk)
        length = int(headers["content-length"])
        rule = self._pick_rule(method, path) if code in (200, 206) else None
        if rule and rule.kind == "rewrite":
            body = rule.fn(_read_exact(up_r, length))
            hlines = [l for l in hlines if not l.lower().startswith(b"content-length:")]
            hlines.append(b"Content-Length: %d\r\n" % len(body))
            client.sendall(status_line + b"".join(hlines) + b"\r\n")
            self._stream_bytes(client, body, path)
            rule.reached.set()
            return keep
        # A blob body counts as active from its headers until just before its last
        # bytes go out: the client cannot have started another download before then,
        # so max_active_blobs never over-counts.
        is_blob = "/blobs/" in path and method == "GET" and length > 0
        active = [False]

        def done():
            if active[0]:
                active[0] = False
                with self.lock:
                    self.active_blobs -= 1
        if is_blob:
            with self.lock:
                self.active_blobs += 1
                self.max_active_blobs = max(self.max_active_blobs, self.active_blobs)
            active[0] = True
        client.sendall(status_line + b"".join(hlines) + b"\r\n")
        try:
            sent = 0
            while sent < length:
                want = min(65536, length - sent)
                if rule and rule.kind in ("cut", "hold") and sent < rule.after:
                    want = min(want, rule.after - sent)
                chunk = up_r.read(want)
                if not chunk:
                    raise _Closed()
                self._stream_bytes(client, chunk, path, on_last=done
                                   if sent + len(chunk) >= length else None)
                sent += len(chunk)
                if rule and sent >= rule.after and not rule.reached.is_set():
                    if rule.kind == "cut":
                        rule.reached.set()
                        client.shutdown(socket.SHUT_RDWR)
                        raise _Closed()
                    if rule.kind == "hold":
                        rule.reached.set()
                        while not self.released.wait(0.1):
                            if self.closing:
                                raise _Closed()
            return keep
        finally:
            done()

    def _stream_bytes(self, client, data, path, on_last=None):
        """Send data (paced when throttled); on_last() runs just before the last piece."""
        rate = self.rate
        step = max(1024, rate // 20) if rate else max(1, len(data))
        for i in range(0, len(data), step):
            piece = data[i:i + step]
            if rate:
                time.sleep(len(piece) / rate)
            if on_last and i + step >= len(data):
                on_last()
            client.sendall(piece)
        with self.lock:
            self.bytes_forwarded[path] += len(data)


def _read_exact(r, n):
    data = r.read(n)
    if data is None or len(data) != n:
        raise _Closed()
    return data


def _split_host(hostport):
    h, _, p = hostport.rpartition(":")
    return h.strip("[]"), int(p)
