"""Read a Debian package's licence from its copyright file (machine-readable DEP-5 or free text)."""

from __future__ import annotations

import re

# Free-text statements seen in Korean documentation packages, mapped to SPDX-like names.
_FREE_TEXT_RULES = [
    (re.compile(r"GNU (?:GPL|General Public License),? version 2", re.I), "GPL-2.0"),
    (re.compile(r"GNU (?:GPL|General Public License),? version 3", re.I), "GPL-3.0"),
    (re.compile(r"Permission is granted to make and distribute verbatim copies", re.I),
     "LicenseRef-verbatim-copying (custom permission notice)"),
]


def licence_from_copyright(text: str) -> str:
    """The licence the copyright file declares for `Files: *` (DEP-5), else a recognised statement."""
    if text.startswith("Format:") or "\nFiles:" in text:
        stanzas = re.split(r"\n\s*\n", text)
        for stanza in stanzas:
            if re.search(r"^Files:\s*\*\s*$", stanza, re.M):
                m = re.search(r"^License:\s*(\S.*)$", stanza, re.M)
                if m:
                    return m.group(1).strip()
        m = re.search(r"^License:\s*(\S.*)$", text, re.M)
        if m:
            return m.group(1).strip()
    for pattern, name in _FREE_TEXT_RULES:
        if pattern.search(text):
            return name
    return "unknown (read the copyright file)"
