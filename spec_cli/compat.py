"""Whether a draft model can propose tokens for a target: their vocabularies must agree."""

from __future__ import annotations

from spec_cli.backend.base import VocabInfo

# Models of one family often pad their vocabularies differently (unused tokens at the
# end); like llama.cpp we accept a small size difference when the shared ids agree.
MAX_SIZE_DIFFERENCE = 128


def incompatibility(target: VocabInfo, draft: VocabInfo) -> str | None:
    """The reason the draft cannot serve the target, or None when it can."""
    if target.kind != draft.kind:
        return f"tokenizer types differ (target {target.kind}, draft {draft.kind})"
    if abs(target.size - draft.size) > MAX_SIZE_DIFFERENCE:
        return f"vocabulary sizes differ (target {target.size}, draft {draft.size})"
    if (target.bos, target.eos) != (draft.bos, draft.eos):
        return (
            f"special tokens differ (target bos/eos {target.bos}/{target.eos}, "
            f"draft {draft.bos}/{draft.eos})"
        )
    if target.eog != draft.eog:
        return "end-of-generation tokens differ"
    if target.size == draft.size or not (target.token_digests and draft.token_digests):
        if target.text_digest != draft.text_digest:
            return "token texts differ (same size, different vocabulary)"
        return None
    shared = 8 * min(target.size, draft.size)
    if target.token_digests[:shared] != draft.token_digests[:shared]:
        return "token texts differ in the ids both vocabularies have"
    return None
