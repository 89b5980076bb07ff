"""`codestral-lsp eval --redaction`: how many planted secrets redaction catches, and how many look-alikes
it wrongly hides.

A seeded generator plants made-up secrets of every kind the redactor must catch (AWS, GCP and Azure
keys, GitHub, GitLab, Slack, Mistral and OpenAI tokens, JWTs, private-key blocks, password
assignments, high-entropy literals) in realistic lines of several languages and file formats, and
writes look-alikes that are not secrets (hashes in lock files, UUIDs in tests, base64 test vectors,
git SHAs, `integrity=` attributes, long identifiers, labels and messages about passwords). None of the values is real: each is drawn from
`random.Random(seed)` in the shape its service uses.

A positive is caught when every character of its secret lies inside a span `find_secrets` returns
(a half-hidden key is a leaked key); a negative is a false positive when `find_secrets` returns any
span in it. Report:

    {"seed", "positives", "recall", "negatives", "false_positive_rate",
     "recall_by_kind": {KIND: rate}, "false_positives_by_kind": {KIND: rate},
     "missed": [up to 10 (kind, text)], "false_positives": [up to 10 (kind, text)]}
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections import defaultdict
from collections.abc import Callable

from ..context.secrets import find_secrets

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


def draw(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# Where a value sits: one line per language or format, `{name}` (as the language spells names) and `{v}`.
ASSIGNMENTS = (
    'python:{snake} = "{v}"', "python:    {snake}: str = '{v}'", 'python:settings["{snake}"] = "{v}"',
    'javascript:const {camel} = "{v}";', "javascript:  {camel}: '{v}',", "typescript:export const {camel}: string = '{v}';",
    'go:{camel} := "{v}"', 'go:\t{pascal}: "{v}",', 'java:private static final String {upper} = "{v}";',
    'rust:let {snake} = "{v}";', 'rust:const {upper}: &str = "{v}";', "ruby:{snake} = '{v}'",
    'csharp:var {camel} = "{v}";', "php:${camel} = '{v}';", "yaml:{snake}: {v}", "yaml:  {snake}: \"{v}\"",
    "dotenv:{upper}={v}", 'dotenv:export {upper}="{v}"', 'json:  "{camel}": "{v}",', 'toml:{snake} = "{v}"',
    'shell:{upper}="{v}" ./deploy.sh', "ini:{snake} = {v}",
)


def spell(name: str) -> dict[str, str]:
    words = name.split("_")
    camel = words[0] + "".join(w.capitalize() for w in words[1:])
    return {"snake": name, "camel": camel, "pascal": camel[:1].upper() + camel[1:], "upper": name.upper()}


def assignment(rng: random.Random, names: tuple[str, ...], value: str) -> str:
    _, template = rng.choice(ASSIGNMENTS).split(":", 1)
    return template.format(v=value, **spell(rng.choice(names)))


# ---- positives: (kind, line(s), the secret) --------------------------------------------------------------

def aws_access_key(rng):
    v = rng.choice(("AKIA", "ASIA")) + draw(rng, string.ascii_uppercase + "234567", 16)
    return assignment(rng, ("aws_access_key_id", "access_key_id", "aws_key"), v), v


def aws_secret_key(rng):
    v = draw(rng, B64, 40)
    if rng.random() < 0.3:
        return f"aws_secret_access_key = {v}", v  # ~/.aws/credentials
    return assignment(rng, ("aws_secret_access_key", "secret_access_key", "aws_secret"), v), v


def gcp_api_key(rng):
    v = "AIza" + draw(rng, B64URL, 35)
    forms = (f'url = f"https://maps.googleapis.com/maps/api/geocode/json?key={v}&address={{q}}"',
             f"firebase.initializeApp({{ apiKey: '{v}', projectId: 'demo-app' }});",
             assignment(rng, ("google_api_key", "maps_key", "gcp_key"), v))
    return rng.choice(forms), v


def gcp_service_account(rng):
    body = draw(rng, B64, 64)
    line = (f'  "private_key": "-----BEGIN PRIVATE KEY-----\\n{body}\\n{draw(rng, B64, 40)}=\\n'
            '-----END PRIVATE KEY-----\\n",')
    return line, body


def azure_storage_key(rng):
    v = draw(rng, B64, 86) + "=="
    conn = f"DefaultEndpointsProtocol=https;AccountName=acct{rng.randrange(100)};AccountKey={v};EndpointSuffix=core.windows.net"
    return rng.choice((f'conn_str = "{conn}"', f"AZURE_STORAGE_CONNECTION_STRING={conn}",
                       assignment(rng, ("account_key", "storage_account_key"), v))), v


def azure_client_secret(rng):
    v = draw(rng, ALNUM, 3) + rng.choice("789") + "Q~" + draw(rng, ALNUM + "_~.-", 34)
    forms = (f'credential = ClientSecretCredential(tenant_id, client_id, "{v}")',
             assignment(rng, ("azure_client_secret", "client_secret"), v))
    return rng.choice(forms), v


def github_token(rng):
    if rng.random() < 0.3:
        v = "github_pat_" + draw(rng, ALNUM, 22) + "_" + draw(rng, ALNUM, 59)
    else:
        v = rng.choice(("ghp_", "gho_", "ghu_", "ghs_", "ghr_")) + draw(rng, ALNUM, 36)
    forms = (f'headers = {{"Authorization": "token {v}"}}', f'curl -H "Authorization: Bearer {v}" https://api.github.com/user',
             assignment(rng, ("github_token", "gh_token", "token"), v))
    return rng.choice(forms), v


def gitlab_token(rng):
    v = "glpat-" + draw(rng, B64URL, 20)
    forms = (f"headers = {{'PRIVATE-TOKEN': '{v}'}}", assignment(rng, ("gitlab_token", "ci_token"), v))
    return rng.choice(forms), v


def slack_token(rng):
    if rng.random() < 0.3:
        v = (f"https://hooks.slack.com/services/T{draw(rng, string.ascii_uppercase + string.digits, 8)}"
             f"/B{draw(rng, string.ascii_uppercase + string.digits, 10)}/{draw(rng, ALNUM, 24)}")
        return assignment(rng, ("slack_webhook_url", "webhook"), v), v.rsplit("/", 1)[1]
    digits = string.digits
    v = f"{rng.choice(('xoxb', 'xoxp', 'xoxa'))}-{draw(rng, digits, 12)}-{draw(rng, digits, 13)}-{draw(rng, ALNUM, 24)}"
    return rng.choice((f"client = WebClient(token='{v}')", assignment(rng, ("slack_bot_token", "slack_token"), v))), v


def mistral_key(rng):
    v = draw(rng, ALNUM, 32)
    forms = (f'client = Mistral(api_key="{v}")', f"const client = new Mistral({{ apiKey: '{v}' }});",
             f'curl https://api.mistral.ai/v1/fim/completions -H "Authorization: Bearer {v}"',
             assignment(rng, ("mistral_api_key", "api_key", "codestral_api_key"), v))
    return rng.choice(forms), v


def openai_key(rng):
    kind = rng.random()
    if kind < 0.5:
        v = "sk-proj-" + draw(rng, B64URL, rng.choice((48, 74, 124)))
    elif kind < 0.7:
        v = "sk-svcacct-" + draw(rng, B64URL, 74)
    else:
        v = "sk-" + draw(rng, ALNUM, 20) + "T3BlbkFJ" + draw(rng, ALNUM, 20)
    forms = (f'client = OpenAI(api_key="{v}")', f"openai.api_key = '{v}'",
             assignment(rng, ("openai_api_key", "openai_key", "llm_key"), v))
    return rng.choice(forms), v


def jwt(rng):
    header = {"alg": rng.choice(("HS256", "RS256", "ES256")), "typ": "JWT"}
    payload = {"sub": str(rng.randrange(10**9)), "name": rng.choice(("Ada", "Linus", "Grace")),
               "iat": 1700000000 + rng.randrange(10**7), "role": rng.choice(("admin", "user"))}
    v = ".".join((b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()),
                  b64url(rng.randbytes(rng.choice((32, 64))))))
    forms = (f'headers = {{"Authorization": "Bearer {v}"}}', f"fetch(url, {{ headers: {{ Authorization: 'Bearer {v}' }} }});",
             f"Cookie: session={v}", assignment(rng, ("access_token", "id_token", "jwt", "session_token"), v))
    return rng.choice(forms), v


def private_key_block(rng):
    label = rng.choice(("RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY",
                        "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY"))
    lines = [draw(rng, B64, 64) for _ in range(rng.randrange(3, 9))] + [draw(rng, B64, rng.randrange(8, 60)) + "="]
    body = "\n".join(lines)
    block = f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"
    form = rng.randrange(3)
    if form == 0:
        text = f'KEY = """{block}"""\n'
    elif form == 1:
        text = "tls:\n  key: |\n" + "\n".join("    " + x for x in block.split("\n")) + "\n"
        return text, lines  # indented: every body line must be hidden
    else:
        text = block + "\n"  # a .pem file pasted into a note or a fixture
    return text, lines


WORDS = ("summer", "dragon", "correct", "horse", "battery", "staple", "monkey", "sunshine", "winter", "falcon",
         "orange", "purple", "rocket", "tiger", "coffee", "shadow", "silver", "hunter", "castle", "garden")


def human_password(rng) -> str:
    forms = (lambda: rng.choice(WORDS).capitalize() + str(rng.randrange(1970, 2030)) + rng.choice("!#$%&*?"),
             lambda: "-".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 5))),
             lambda: rng.choice(WORDS).replace("o", "0").replace("a", "@").replace("e", "3") + str(rng.randrange(100)),
             lambda: draw(rng, ALNUM + "!@#$%^&*", rng.randrange(10, 20)))
    return rng.choice(forms)()


def password_assignment(rng):
    v = human_password(rng)
    user = rng.choice(("admin", "app", "svc_backup", "deploy"))
    forms = (f'conn = psycopg2.connect(host="db", user="{user}", password="{v}")',
             f"mysql -u {user} -p'{v}' -h db.internal", f"spring.datasource.password={v}",
             f'DATABASE_URL="postgres://{user}:{v}@db.internal:5432/app"',
             assignment(rng, ("password", "db_password", "admin_password", "smtp_password", "passwd", "pwd",
                              "secret", "client_secret", "app_secret"), v))
    if "@" in v or "/" in v or ":" in v:  # these break a URL's user:password@host
        forms = forms[:3] + forms[4:]
    return rng.choice(forms), v


def high_entropy_literal(rng):
    kind = rng.randrange(3)
    if kind == 0:
        v = draw(rng, HEX, rng.choice((32, 40, 48, 64)))
    elif kind == 1:
        v = base64.b64encode(rng.randbytes(rng.choice((24, 32, 48)))).decode()
    else:
        v = draw(rng, ALNUM, rng.choice((32, 40, 48)))
    names = ("signing", "cookie_signer", "encryption", "hmac_seed", "webhook_signature", "master", "payload_seal")
    return assignment(rng, names, v), v


POSITIVES: dict[str, Callable] = {
    "aws access key": aws_access_key, "aws secret key": aws_secret_key, "gcp api key": gcp_api_key,
    "gcp service account": gcp_service_account, "azure storage key": azure_storage_key,
    "azure client secret": azure_client_secret, "github token": github_token, "gitlab token": gitlab_token,
    "slack token": slack_token, "mistral key": mistral_key, "openai key": openai_key, "jwt": jwt,
    "private key block": private_key_block, "password assignment": password_assignment,
    "high-entropy literal": high_entropy_literal,
}


# ---- negatives: (kind, line) -------------------------------------------------------------------------------

def lock_file_hash(rng):
    sha256, sha512 = draw(rng, HEX, 64), base64.b64encode(rng.randbytes(64)).decode()
    pkg, ver = rng.choice(("requests", "lodash", "serde", "numpy", "react-dom", "tokio")), f"{rng.randrange(9)}.{rng.randrange(30)}.{rng.randrange(20)}"
    return rng.choice((
        f'    "integrity": "sha512-{sha512}",',  # package-lock.json
        f"  integrity sha512-{sha512}",  # yarn.lock
        f'  resolved "https://registry.yarnpkg.com/{pkg}/-/{pkg}-{ver}.tgz#{draw(rng, HEX, 40)}"',
        f'    {{file = "{pkg}-{ver}-py3-none-any.whl", hash = "sha256:{sha256}"}},',  # poetry.lock
        f"{pkg}=={ver} \\\n    --hash=sha256:{sha256}",  # requirements.txt with hashes
        f'checksum = "{sha256}"',  # Cargo.lock
        f"github.com/{pkg}/{pkg} v{ver} h1:{base64.b64encode(rng.randbytes(32)).decode()}",  # go.sum
        f'            "sha256:{sha256}",',  # Pipfile.lock
        f"    resolution: {{integrity: sha512-{sha512}}}",  # pnpm-lock.yaml
        f"sha256 = \"{sha256}\"",  # a Bazel http_archive
    ))


def uuid_in_test(rng):
    u = "%08x-%04x-4%03x-%x%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                                          rng.choice((8, 9, 10, 11)), rng.getrandbits(12), rng.getrandbits(48))
    return rng.choice((
        f'    user_id = "{u}"', f'    assert str(order.id) == "{u}"', f"  const tenantId = '{u}';",
        f'        var id = Guid.Parse("{u}");', f'    id := uuid.MustParse("{u}")',
        f'    request = make_request(request_id=UUID("{u}"))', f'    expect(res.body.id).toBe("{u}");',
        f'  "correlationId": "{u.upper()}",', f'    uid = uuid.UUID(hex="{u.replace("-", "")}")',
    ))


PHRASES = ("hello world", "any carnal pleasure.", "The quick brown fox jumps over the lazy dog",
           "Many hands make light work.", "foobar", "user@example.com", "lorem ipsum dolor sit amet",
           "{\"type\":\"test\",\"ok\":true}", "Man is distinguished, not only by his reason",
           "light work.", "codestral-lsp test vector", "<html><body>hi</body></html>")


def base64_test_vector(rng):
    text = rng.choice(PHRASES)
    if rng.random() < 0.5:
        text += f" #{rng.randrange(1000)}"
    enc = base64.b64encode(text.encode()).decode()
    text = text.replace('"', '\\"')  # as a string literal spells it
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.randrange(20, 40))).decode()
    return rng.choice((
        f'    assert base64.b64encode(b"{text}") == b"{enc}"', f"  expect(btoa('{text}')).toBe('{enc}');",
        f'    {{"{text}", "{enc}"}},', f'    assert decode("{enc}") == "{text}"',
        f'        assertEquals("{enc}", Base64.getEncoder().encodeToString("{text}".getBytes()));',
        f'  <img src="data:image/png;base64,{png}" alt="dot">',
        f'    want := "{enc}" // base64 of "{text}"',
    ))


def git_sha(rng):
    sha = draw(rng, HEX, 40)
    return rng.choice((
        f"    rev: {sha}  # frozen: v{rng.randrange(9)}.{rng.randrange(20)}.0",  # .pre-commit-config.yaml
        f"      - uses: actions/checkout@{sha}", f"git checkout {sha}", f'    "sha": "{sha}",',
        f'COMMIT_SHA = "{sha}"', f"	golang.org/x/sys v0.0.0-2024{rng.randrange(10, 12)}{rng.randrange(10, 28)}120000-{sha[:12]} // indirect",
        f'  commit = "{sha}"', f"Merge: {sha[:7]} {draw(rng, HEX, 7)}", f'    revision = "{sha}"',
        f"    expected_head = '{sha}'  # the commit the fixture repository was built at",
    ))


def integrity_attribute(rng):
    algo, n = rng.choice((("sha384", 48), ("sha256", 32), ("sha512", 64)))
    digest = base64.b64encode(rng.randbytes(n)).decode()
    lib = rng.choice(("jquery-3.7.1.min.js", "bootstrap.bundle.min.js", "htmx.min.js", "alpine.js"))
    return rng.choice((
        f'<script src="https://cdn.example.net/{lib}" integrity="{algo}-{digest}" crossorigin="anonymous"></script>',
        f'  <link rel="stylesheet" href="/css/app.css" integrity="{algo}-{digest}">',
        f"    script.integrity = '{algo}-{digest}';",
    ))


IDENTIFIER_WORDS = ("user", "account", "password", "token", "reset", "request", "handler", "factory", "service",
                    "payment", "refund", "reconciliation", "session", "expiry", "secret", "manager", "internal",
                    "validator", "authentication", "provider", "default", "message", "config", "key")


def long_identifier(rng):
    words = [rng.choice(IDENTIFIER_WORDS) for _ in range(rng.randrange(4, 8))]
    snake, camel = "_".join(words), words[0] + "".join(w.capitalize() for w in words[1:])
    pascal = camel[:1].upper() + camel[1:]
    return rng.choice((
        f'    def test_{snake}(self):', f'@pytest.mark.parametrize("case", ["{snake}", "{camel}"])',
        f'  "{".".join(words[:4])}": "{" ".join(words).capitalize()}",',  # an i18n message
        f'import com.example.{".".join(words[:3])}.{pascal};', f'    logger.debug("{snake} took %d ms", elapsed)',
        f"  const {camel} = require('./{'-'.join(words)}');", f'    {snake.upper()} = "{snake.upper()}"',
        f"    password_reset_token = generate_{snake}(user)", f'    key = "{camel}"',
        f'  className="{words[0]}__{words[1]}-{words[2]}--{words[3]}"', f'func {pascal}(ctx context.Context) error {{',
    ))


LABELS = ("Password", "Client secret", "Enter your password", "API key", "Forgot password?", "Access token",
          "Show secret", "Confirm new password", "Secret key (optional)", "Token expired")


def label_or_message(rng):
    label, key = rng.choice(LABELS), "_".join(rng.choice(IDENTIFIER_WORDS) for _ in range(2))
    return rng.choice((
        f'  "{key.replace("_", ".")}.{label.split()[-1].lower().strip("?()")}": "{label}",',  # an i18n catalog
        f'    <label for="{key}">{label}</label>', f"  placeholder: '{label}',", f'    password_label = "{label}"',
        f'    secret_hint: str = "{label}"', f'{key.upper()}_PASSWORD_LABEL = "{label}"',
        f'        raise ValueError("password must have at least {rng.randrange(8, 16)} characters")',
    ))


NEGATIVES: dict[str, Callable] = {
    "lock-file hash": lock_file_hash, "uuid in a test": uuid_in_test, "base64 test vector": base64_test_vector,
    "git sha": git_sha, "integrity attribute": integrity_attribute, "long identifier": long_identifier,
    "label or message": label_or_message,
}


def corpus(n: int, seed: int) -> tuple[list[tuple[str, str, list[str]]], list[tuple[str, str]]]:
    """n positives (kind, text, secrets) and n negatives (kind, text), kinds taken in turn."""
    rng = random.Random(seed)
    positives, negatives = [], []
    for i in range(n):
        kind = list(POSITIVES)[i % len(POSITIVES)]
        text, secret = POSITIVES[kind](rng)
        positives.append((kind, text if text.endswith("\n") else text + "\n", secret if isinstance(secret, list) else [secret]))
        kind = list(NEGATIVES)[i % len(NEGATIVES)]
        negatives.append((kind, NEGATIVES[kind](rng) + "\n"))
    return positives, negatives


def covered(text: str, secret: str, spans: list[tuple[int, int]]) -> bool:
    """Whether every occurrence of secret in text lies inside one span."""
    start = text.find(secret)
    while start >= 0:
        if not any(a <= start and start + len(secret) <= b for a, b in spans):
            return False
        start = text.find(secret, start + 1)
    return True


def evaluate_redaction(n: int = 3000, seed: int = 0, find: Callable = find_secrets) -> dict:
    positives, negatives = corpus(n, seed)
    caught, flagged = defaultdict(list), defaultdict(list)
    missed, wrong = [], []
    for kind, text, secrets in positives:
        spans = find(text)
        ok = all(covered(text, s, spans) for s in secrets)
        caught[kind].append(ok)
        if not ok:
            missed.append((kind, text.rstrip("\n")))
    for kind, text in negatives:
        spans = find(text)
        flagged[kind].append(bool(spans))
        if spans:
            wrong.append((kind, text.rstrip("\n")))
    rate = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {
        "seed": seed, "positives": len(positives), "recall": rate([x for v in caught.values() for x in v]),
        "negatives": len(negatives), "false_positive_rate": rate([x for v in flagged.values() for x in v]),
        "recall_by_kind": {k: rate(v) for k, v in caught.items()},
        "false_positives_by_kind": {k: rate(v) for k, v in flagged.items()},
        "missed": missed[:10], "false_positives": wrong[:10],
    }
