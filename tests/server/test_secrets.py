"""Secret redaction (codestral_lsp/context/secrets.py) and the pipeline's use of it: each kind of secret is
replaced by the placeholder, ordinary code is left as it is, remote prompts go out redacted, and a
suggestion that holds a secret-shaped literal is not shown.

The secrets below are made up; each has the shape its service gives its keys."""

from __future__ import annotations

import doctest
import importlib
import logging

import pytest

from codestral_lsp.backends import Completion
from codestral_lsp.context import secrets
from codestral_lsp.context.postprocess import Suggestion
from codestral_lsp.context.secrets import PLACEHOLDER, find_secrets, has_secret, redact
from codestral_lsp.pipeline import Completer, Document, secret_in
from test_exclusion import Recording, completer  # noqa: F401  (a backend that records its prompts)

B64 = "/T/rPJJQt5dKm1KLaWNjIaRhtV71W3vq/YCamp6SW3mg"  # random bytes (base64 of text is a test vector)
AZURE = "q3Zk8Yw1Lp0Xv5Rb7Tn2Md4Hs6Jf9Gc1Ke3Aw5Uy7Io0Pq2Ws4Ed6Rf8Tg0Yh2Uj4Ik6Ol8Pz1Xc3Vb5Nm7Qa9=="
PEM_BODY = ("MIIEowIBAAKCAQEA7bq9nL2kPq1sX3vRZ2gJmYt8w0cXo4uN5dTfHeWzKQ1xLk9a\n"
            "b8Qm2VrT6yHnJcF0pE3sD7gZ1iU4oP9lK8jH6gF5dS4aQ3wE2rT1yU0iO9pL8kJ\n")
CASES = {  # kind: (text, the secret in it)
    "aws access key id": ('aws_id = "AKIAIOSFODNN7EXAMPLE"\n', "AKIAIOSFODNN7EXAMPLE"),
    "aws secret key": ('aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n',
                       "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    "aws key in .env": ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n", "AKIAIOSFODNN7EXAMPLE"),
    "gcp api key": ("const key = 'AIzaSyD3x4mPl3K3yF0rT3st1ngPurp0s3sOnly';\n",
                    "AIzaSyD3x4mPl3K3yF0rT3st1ngPurp0s3sOnly"),
    "gcp service account key": ('{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n'
                                '-----END PRIVATE KEY-----\\n", "client_email": "a@b.iam"}\n',
                                "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
    "azure storage key": ("conn = 'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + AZURE + ";'\n",
                          AZURE[:-2]),
    "github token": ('token = "ghp_' + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8" + '"\n',
                     "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"),
    "github fine-grained token": ("GH=github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123\n",
                                  "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123"),
    "gitlab token": ("headers = {'PRIVATE-TOKEN': 'glpat-xY9zW8vU7tS6rQ5pO4nM'}\n", "glpat-xY9zW8vU7tS6rQ5pO4nM"),
    "slack token": ("slack = 'xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx'\n",
                    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    "slack webhook": ('hook = "https://hooks.slack.com/services/T0ABCDEFG/B0ABCDEFG/aBcDeFgHiJkLmNoPqRsTuVwX"\n',
                      "aBcDeFgHiJkLmNoPqRsTuVwX"),
    "mistral key in .env": ("MISTRAL_API_KEY=q7Xv2LmN9pR4sT1wY6zB3cD8fG5hJ0kA\n", "q7Xv2LmN9pR4sT1wY6zB3cD8fG5hJ0kA"),
    "mistral key in code": ('client = Mistral(api_key="q7Xv2LmN9pR4sT1wY6zB3cD8fG5hJ0kA")\n',
                            "q7Xv2LmN9pR4sT1wY6zB3cD8fG5hJ0kA"),
    "openai project key": ('OPENAI_API_KEY = "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90"\n',
                           "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90"),
    "openai legacy key": ("k = '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'\n",
                          "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"),
    "jwt": ('auth = "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.'
            'dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"\n', "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    "private key block": ("key = '''-----BEGIN RSA PRIVATE KEY-----\n" + PEM_BODY
                          + "-----END RSA PRIVATE KEY-----'''\n",
                          "7bq9nL2kPq1sX3vRZ2gJmYt8w0cXo4uN5dTfHeWzKQ1xLk9a"),
    "private key block cut at its end": ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + PEM_BODY,
                                         "8Qm2VrT6yHnJcF0pE3sD7gZ1iU4oP9lK8jH6gF5dS4aQ3wE2rT1yU0iO9pL8kJ"),
    "private key block cut at its start": (PEM_BODY + "-----END EC PRIVATE KEY-----\nx = 1\n",
                                           "7bq9nL2kPq1sX3vRZ2gJmYt8w0cXo4uN5dTfHeWzKQ1xLk9a"),
    "password in python": ('db_password = "correct horse battery"\n', "correct horse battery"),
    "password in javascript": ("const config = { password: 'Tr0ub4dor&3' };\n", "Tr0ub4dor&3"),
    "password in yaml": ("database:\n  password: s3cr3t-Pa55\n", "s3cr3t-Pa55"),
    "secret in .env": ("export APP_SECRET=hunter2hunter2\n", "hunter2hunter2"),
    "basic auth url": ('url = "postgres://admin:Sup3rS3cret@db.internal:5432/app"\n', "Sup3rS3cret"),
    "high-entropy literal": (f'blob = "{B64}"\n', B64),
    "azure client secret": ('cred = ClientSecretCredential(tenant, client, "Xy48Q~Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv.w")\n',
                            "Xy48Q~Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv.w"),
    "mistral key as a bearer token": ('curl -H "Authorization: Bearer q7Xv2LmN9pR4sT1wY6zB3cD8fG5hJ0kA" $URL\n',
                                      "q7Xv2LmN9pR4sT1wY6zB3cD8fG5hJ0kA"),
    "typed password": ("    password: str = 'Sunshine1987*'\n", "Sunshine1987*"),
    "password on a command line": ("mysql -u app -p'Winter2026#' -h db.internal\n", "Winter2026#"),
    "password in properties": ("spring.datasource.password=Rocket1995?\n", "Rocket1995?"),
    "high-entropy hex literal": ('SIGNING = "8f14e45fceea167a5a36dedd4bea2543b9c1f2d7"\n',
                                 "8f14e45fceea167a5a36dedd4bea2543b9c1f2d7"),
}


@pytest.mark.parametrize("kind", CASES)
def test_each_kind_of_secret_is_replaced(kind):
    text, secret = CASES[kind]
    out, count = redact(text)
    assert secret not in out and PLACEHOLDER in out and count >= 1, (kind, out)
    assert has_secret(text)
    assert redact(out) == (out, 0)  # the placeholder itself is not a secret


def test_what_is_around_a_secret_stays():
    assert redact('aws_id = "AKIAIOSFODNN7EXAMPLE"  # prod\n') == (f'aws_id = "{PLACEHOLDER}"  # prod\n', 1)
    assert redact("MISTRAL_API_KEY=q7Xv2LmN9pR4sT1wY6zB3cD8fG5hJ0kA\nDEBUG=1\n") == \
        (f"MISTRAL_API_KEY={PLACEHOLDER}\nDEBUG=1\n", 1)
    text, _ = CASES["private key block"]
    assert redact("a = 1\n" + text + "b = 2\n") == (f"a = 1\nkey = '''{PLACEHOLDER}'''\nb = 2\n", 1)
    two = 'a = "AKIAIOSFODNN7EXAMPLE"; b = "AKIAI44QH8DHBEXAMPLE"\n'
    assert redact(two) == (f'a = "{PLACEHOLDER}"; b = "{PLACEHOLDER}"\n', 2)


@pytest.mark.parametrize("line", [
    "password = None", "pwd = self.pwd", "passwd = getpass.getpass()", "password = get_password(user)",
    "if password == '':", "token = request.headers.get('Authorization')", "api_key = os.environ['MISTRAL_API_KEY']",
    'ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"',
    'color = "#1e90ff"', 'id = "123e4567-e89b-12d3-a456-426614174000"',
    "server = '10.0.0.12'", 'url = "https://example.com/api/v1/users?page=2"', "secret_key: str = ''",
    'logger.info("password changed for %s", user)', "const tokenize = (s) => s.split(' ');",
    '    "integrity": "sha512-Mpwoc0Cmvp8aZLpizh4BBV1v/w1kD1U4qXn64xbPX2U1WCmVkCqZw4MvqfXhkz4LYlGMcCI++Q0G/cOe970APQ==",',
    'checksum = "9db073ac7d7a7c198ffe01ce75fc538e29e602225b0dde9bb53f3b967cba892b"',
    '    "sha": "05f508bc6f087a4d8baa409f072fe6f43e30a56c",', 'uid = uuid.UUID(hex="f878738522c44868b00a39522dd1b62c")',
    'assert decode("TWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsu") == "Many hands make light work."',
    '  "settings.account.secret": "Client secret",', 'PASSWORD_FIELD = "PASSWORD_FIELD"',
    'const header = `Bearer ${accessTokenForTheCurrentUser}`;'])
def test_ordinary_lines_are_left_alone(line):
    assert redact(line + "\n") == (line + "\n", 0)


SOURCES = ["argparse", "json.encoder", "logging.handlers", "asyncio.base_events", "email.message", "http.client",
           "smtplib", "ftplib", "httpx._client", "httpx._auth", "pygls.protocol.language_server",
           "codestral_lsp.backends.remote", "codestral_lsp.context.windows", "engine.kv_cache"]


@pytest.mark.parametrize("module", SOURCES)
def test_real_source_files_are_unchanged(module):
    """Real code from installed packages (their password, token and auth handling included) goes out as it is."""
    path = importlib.import_module(module).__file__
    text = open(path, encoding="utf-8").read()
    out, count = redact(text)
    assert count == 0 and out == text, [text[a - 30: b + 5] for a, b in find_secrets(text)]


def test_docstring_examples():
    result = doctest.testmod(secrets)
    assert result.failed == 0 and result.attempted > 0


# -- suggestions ---------------------------------------------------------------------------------------


def test_a_suggestion_is_read_with_the_line_it_continues():
    text = 'db_password = "'
    assert secret_in(Suggestion('correct horse battery"', len(text)), text, len(text))
    assert not secret_in(Suggestion('"', len(text)), text, len(text))
    typed = 'key = "AKIAIOSFODNN7EXAMPLE'  # the user typed the secret: closing it is not showing one
    assert not secret_in(Suggestion('"\n', len(typed)), typed, len(typed))
    assert secret_in(Suggestion("ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8'", 7), "t = 'x'\nt = '", 12)
    assert not secret_in(Suggestion("return width * height\n", 4), "    ", 4)


# -- the pipeline ----------------------------------------------------------------------------------------

AWS = "AKIAIOSFODNN7EXAMPLE"
CODE = f'import boto3\n\nclient = boto3.client("s3", aws_access_key_id="{AWS}")\nclient.'


def test_remote_prompts_go_out_redacted_and_the_count_is_logged(caplog):
    c, backend = completer(remote=True)
    with caplog.at_level(logging.DEBUG, logger="codestral_lsp.pipeline"):
        c.complete(Document("file:///home/me/app/s3.py", "python", CODE, 1), len(CODE))
    prefix, suffix = backend.prompts[-1]
    assert AWS not in prefix and PLACEHOLDER in prefix and "aws_access_key_id=" in prefix
    assert "remote request: 1 redaction(s)" in caplog.text and AWS not in caplog.text
    c.fill(CODE, "\n" + CODE)
    assert all(AWS not in part for part in backend.prompts[-1])


def test_local_prompts_are_not_redacted():
    c, backend = completer(remote=False)
    c.complete(Document("file:///home/me/app/s3.py", "python", CODE, 1), len(CODE))
    assert AWS in backend.prompts[-1][0]


class Answers(Recording):
    """Answers the next text of `answers`."""

    def __init__(self, remote: bool, *answers: str):
        super().__init__(remote)
        self.answers = list(answers)

    def stream(self, prefix, suffix="", **options):
        from test_exclusion import Answered

        self.prompts.append((prefix, suffix))
        return Answered(self.answers.pop(0))

    def chat(self, turns, **options):
        self.prompts.append(tuple(content for _, content in turns))
        return Completion(self.answers.pop(0), [], {"stop_reason": "eos"})


@pytest.mark.parametrize("remote", [True, False])
def test_a_suggestion_holding_a_token_is_not_shown(remote):
    token = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    backend = Answers(remote, f'"{token}"', "upload_file(path)")
    c = Completer(backend)
    text = "GITHUB_TOKEN = \n"
    assert c.complete(Document("file:///a.py", "python", text, 1), len(text) - 1).suggestion is None
    assert c.complete(Document("file:///b.py", "python", CODE, 1), len(CODE)).suggestion.text == "upload_file(path)"
    backend.answers = [f'    return "{token}"\n', "    return 42\n"]
    assert c.fill("def token():\n", "\n").text == "" and c.fill("def answer():\n", "\n").text == "    return 42\n"


def test_chat_turns_go_out_redacted_and_an_answer_with_a_secret_is_dropped():
    backend = Answers(True, f'key = "{AWS}"', "key = load_key()")
    backend.instruct = True
    c = Completer(backend)
    assert c.chat([("user", f'Fix: key = "{AWS}"')]).text == ""
    assert backend.prompts[-1] == (f'Fix: key = "{PLACEHOLDER}"',)
    assert c.chat([("user", "Fix: key = load()")]).text == "key = load_key()"
