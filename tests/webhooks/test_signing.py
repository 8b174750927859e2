"""The signature scheme as documented: the README's verification snippet is the module's, and it accepts what the
sender signs and nothing else."""

import re
import textwrap
import time
from pathlib import Path

from app.webhooks import signing
from bench.webhook_receiver import documented_verify

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_shows_the_documented_verification_snippet():
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r"```python\n(import hashlib.*?)```", readme, re.S).group(1)
    documented = re.search(r"\n {4}(import hashlib.*?)\n\nVerify", signing.__doc__, re.S).group(1)
    assert shown.strip() == textwrap.dedent("    " + documented).strip()


def test_the_snippet_accepts_the_senders_signature_and_nothing_else():
    verify, secret, body = documented_verify(), signing.new_secret(), b'{"id":"e1","data":{}}'
    now = int(time.time())
    header = signing.signature_header([secret], now, body)
    assert verify(secret, body, header)
    assert not verify(secret, body + b" ", header)
    assert not verify(signing.new_secret(), body, header)
    assert not verify(secret, body, signing.signature_header([secret], now - 3600, body))  # too old: a replay
    assert not verify(secret, body, header.replace(f"t={now}", f"t={now + 1}"))
    assert verify(secret, body, signing.signature_header([signing.new_secret(), secret], now, body))
