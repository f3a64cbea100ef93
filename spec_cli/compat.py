"""Whether a draft model can propose tokens for a target: their vocabularies must agree."""

from __future__ import annotations

from spec_cli.backend.base import VocabInfo


def incompatibility(target: VocabInfo, draft: VocabInfo) -> str | None:
    """The reason the draft cannot serve the target, or None when it can."""
    if target.kind != draft.kind:
        return f"tokenizer types differ (target {target.kind}, draft {draft.kind})"
    if target.size != draft.size:
        return f"vocabulary sizes differ (target {target.size}, draft {draft.size})"
    if (target.bos, target.eos) != (draft.bos, draft.eos):
        return (
            f"special tokens differ (target bos/eos {target.bos}/{target.eos}, "
            f"draft {draft.bos}/{draft.eos})"
        )
    if target.eog != draft.eog:
        return "end-of-generation tokens differ"
    if target.text_digest != draft.text_digest:
        return "token texts differ (same size, different vocabulary)"
    return None
