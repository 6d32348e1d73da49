"""Credential files: refused by their name, by where they sit, or by what they hold.

The content check looks for a private key block and for tokens whose format their issuer publishes (cloud, VCS,
package registries, chat and payment APIs): prefixes and lengths that ordinary source text does not have. These are
our own patterns, not a secret-scanning library's: detect-secrets 1.5.0 (the best-kept candidate on PyPI, Apache-2.0)
took 0.7 s to import its detectors and 0.3-0.5 s to scan a 500,000-character file through its own line-by-line API
(85-90 ms with its patterns run over the whole text), against about 25 ms here (bench/files_secrets.py prints both),
and its last release (May 2024) predates token formats now common (GitHub fine-grained, Anthropic, Hugging Face,
Docker Hub, Vault). Generic "password = ..." and high-entropy guesses are left out on purpose: in source code they
refuse far more ordinary files than they catch keys.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath

# Names match the file's own name; folders match any folder on its path; nested entries match the end of its path.
SECRET_NAMES = (".env*", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc", "_netrc")
SECRET_NAMES += ("*.p12", "*.pfx", "*.jks", "*.keystore", ".git-credentials", ".pgpass", "*.kdbx")
SECRET_NAMES += ("credentials.json", "credentials.tfrc.json", "kubeconfig", "*.kubeconfig", ".my.cnf", ".mylogin.cnf")
SECRET_NAMES += (".htpasswd", ".s3cfg", ".vault-token", "*.tfstate", "*.tfstate.backup", ".dockercfg", ".boto")
SECRET_NAMES += ("secrets.json", "secrets.yml", "secrets.yaml", "secrets.toml")
SECRET_FOLDERS = frozenset({".git", ".ssh", ".gnupg", ".azure"})
SECRET_NESTED = (
    (".aws", "credentials"),
    (".aws", "config"),
    (".config", "gcloud"),
    (".config", "gh", "hosts.yml"),
    (".kube", "config"),
    (".docker", "config.json"),
    (".cargo", "credentials"),
    (".cargo", "credentials.toml"),
)
# Registry settings files: most hold only addresses and options, so they are refused only when they hold a login.
REGISTRY_LOGINS = {
    ".npmrc": re.compile(r"_auth|_password|token", re.I),
    ".pypirc": re.compile(r"password|token", re.I),
    ".yarnrc.yml": re.compile(r"npmAuth(?:Token|Ident)|npmPassword", re.I),
    ".yarnrc": re.compile(r"_auth|_password|token", re.I),
}
REGISTRY_LOGIN = "a registry token or password"
_SECRET_NAME = re.compile("|".join(fnmatch.translate(name) for name in SECRET_NAMES))

_LINE = r"(?:\r?\n|(?:\\r)?\\n)"  # a real line break, or one written as \n inside a JSON string (GCP key files)
_AFTER = r"(?![A-Za-z0-9_])"
TOKEN_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    # Each pattern starts with a fixed prefix, which lets the regex engine skip through a file at C speed.
    (kind, re.compile(pattern))
    for kind, pattern in (
        (
            "a private key",
            rf"-----BEGIN (?:[A-Z0-9]+ ){{0,3}}PRIVATE KEY(?: BLOCK)?-----{_LINE}(?:[\w-]+: [^\r\n\\]*{_LINE})*"
            rf"{_LINE}?[A-Za-z0-9+/=]{{40}}",
        ),
        ("a private key", r"---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"),
        ("a private key", r"PuTTY-User-Key-File-\d: "),
        ("an AWS access key", rf"A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{{16}}{_AFTER}"),
        ("a Google API key", rf"AIza[0-9A-Za-z_-]{{35}}{_AFTER}"),
        ("a Google OAuth client secret", r"GOCSPX-[A-Za-z0-9_-]{28}"),
        ("an Azure storage key", r"AccountKey=[A-Za-z0-9+/]{86}=="),
        ("a GitHub token", rf"gh[pousr]_[A-Za-z0-9]{{36}}{_AFTER}"),
        ("a GitHub token", r"github_pat_[A-Za-z0-9_]{70,}"),
        ("a GitLab token", r"gl(?:pat|dt|ptt|rt|soat|ft|cbt|imt|agent|oas)-[A-Za-z0-9_-]{20,}"),
        ("an Atlassian token", r"ATATT3[A-Za-z0-9_=-]{150,}"),
        ("an npm token", rf"npm_[A-Za-z0-9]{{36}}{_AFTER}"),
        ("a PyPI token", r"pypi-AgE[A-Za-z0-9_-]{50,}"),
        ("a RubyGems token", rf"rubygems_[0-9a-f]{{48}}{_AFTER}"),
        ("a NuGet key", rf"oy2[a-z0-9]{{43}}{_AFTER}"),
        ("a Docker Hub token", r"dckr_pat_[A-Za-z0-9_-]{27,}"),
        ("a HashiCorp Vault token", r"hv[sb]\.[A-Za-z0-9_-]{24,}"),
        ("a Terraform Cloud token", r"\.atlasv1\.[A-Za-z0-9_-]{60,}"),
        ("a Slack token", r"xox[abposr]-[0-9A-Za-z-]{10,}"),
        ("a Slack webhook", r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/\w{20,}"),
        ("a Stripe key", r"sk_live_[0-9a-zA-Z]{20,}"),
        ("a Stripe key", r"rk_live_[0-9a-zA-Z]{20,}"),
        ("an OpenAI key", r"T3BlbkFJ[A-Za-z0-9_-]{20}"),  # base64 of "OpenAI", inside every classic key
        ("an OpenAI key", r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}"),
        ("an Anthropic key", r"sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_-]{80,}"),
        ("a Hugging Face token", rf"hf_[A-Za-z]{{34}}{_AFTER}"),
        ("a SendGrid key", r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
        ("a Shopify token", rf"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{{32}}{_AFTER}"),
    )
)


def allowed(shown: str, name: str, allow: tuple[str, ...]) -> bool:
    """Whether DELEGATE_FILE_ALLOW lets this file through (its path under its root, or its name)."""
    return any(fnmatch.fnmatchcase(shown, p) or fnmatch.fnmatchcase(name, p) for p in allow)


def is_secret(relative: PurePosixPath, allow: tuple[str, ...]) -> bool:
    """Whether a path (relative to its root) looks like it holds credentials and is not allowed explicitly. Case
    does not matter (on macOS and Windows `.ENV` is the same file as `.env`)."""
    text = str(relative)
    if allow and allowed(text, relative.name, allow):
        return False
    parts = text.lower().split("/")
    if _SECRET_NAME.match(parts[-1]) or any(part in SECRET_FOLDERS for part in parts[:-1]):
        return True
    return any(tuple(parts[i : i + len(n)]) == n for n in SECRET_NESTED for i in range(len(parts)))


def credential_in(name: str, text: str) -> str | None:
    """What credential the text of a file called `name` holds ('a GitHub token', …), or None."""
    login = REGISTRY_LOGINS.get(name.lower())
    if login is not None and login.search(text):
        return REGISTRY_LOGIN
    for kind, pattern in TOKEN_FORMATS:
        if pattern.search(text):
            return kind
    return None
