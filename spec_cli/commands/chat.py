"""`spec chat`: an interactive conversation with live speculative rendering."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from spec_cli.commands import options as o


def chat(
    ctx: typer.Context,
    model: o.Model = None,
    draft: o.DraftModel = None,
    drafter: o.DrafterName = "auto",
    draft_max: o.DraftMax = o.DEFAULT_DRAFT_MAX,
    max_tokens: o.MaxTokens = 512,
    temperature: o.Temperature = 0.0,
    top_k: o.TopK = 0,
    top_p: o.TopP = 1.0,
    min_p: o.MinP = 0.0,
    seed: o.Seed = None,
    system: Annotated[
        str | None, typer.Option("--system", "-s", help="System prompt for the conversation.")
    ] = None,
    load: Annotated[
        str | None,
        typer.Option("--load", help="Continue a conversation saved with /save.", metavar="FILE"),
    ] = None,
    color: o.Color = "auto",
    ctx_size: o.CtxSize = None,
    threads: o.Threads = 0,
    gpu_layers: o.GpuLayers = 0,
    draft_gpu_layers: o.DraftGpuLayers = 0,
    ngram_cache: o.NgramCache = None,
) -> None:
    """Chat with a model in the terminal; accepted draft tokens show in colour.

    Type /help in the chat for commands. Ctrl-C stops an answer; Ctrl-D quits.
    """
    import sys

    from spec_cli.chat_repl import COMMANDS, ChatRepl, ChatSettings
    from spec_cli.conversation import Conversation
    from spec_cli.errors import SpecError, UsageError
    from spec_cli.render.chat import ChatTerminal
    from spec_cli.session import ModelOptions, open_session
    from spec_cli.signals import sigterm_as_interrupt

    if color not in ("auto", "always", "never"):
        raise UsageError(f"--color must be auto, always or never, not {color!r}")
    if ngram_cache is not None:
        from spec_cli.ngram_store import check_static

        check_static(ngram_cache)
    settings = ChatSettings(drafter, draft_max, max_tokens, temperature, top_k, top_p, min_p, seed)
    settings.validate()
    if load:
        from spec_cli.conversation import saved_settings

        # The file's settings carry on, except those given on this command line.
        given = {
            name
            for name in ctx.params
            if (source := ctx.get_parameter_source(name)) is not None and source.name != "DEFAULT"
        }
        try:
            settings = settings.with_saved(saved_settings(load), given)
        except UsageError as e:
            why = f"{load} holds a setting out of range ({e}): fix or remove it"
            raise UsageError(why) from None
        if settings.drafter == "model" and draft is None and "drafter" not in given:
            from spec_cli import hub

            hub.note(f"{load} drafted with a draft model: pass --draft to go on so; using auto")
            settings = replace(settings, drafter="auto")
        drafter = settings.drafter
    terminal = ChatTerminal(color, commands=COMMANDS)
    opts = ModelOptions(
        model,
        draft,
        ctx_size,
        threads,
        gpu_layers,
        draft_gpu_layers,
        auto_draft=drafter in ("auto", "model"),  # only these use a draft model
    )
    with sigterm_as_interrupt(terminal.stop_reading) as received, open_session(opts) as session:
        if not session.has_chat_template():
            raise UsageError(
                f"{Path(session.model_path).name} has no chat template, so it cannot hold a "
                "conversation: use an instruction-tuned model that has one (the default "
                "SmolLM2-135M-Instruct does: leave out --model), or `spec run --raw` to "
                "continue plain text"
            )
        conversation = Conversation(session, system)
        if load:
            conversation.load(load)
            if system:
                conversation.set_system(system)  # --system wins over the file's
        repl = ChatRepl(
            session, conversation, settings, terminal, ngram_cache, lambda: received.sigterm
        )
        try:
            terminal.banner(
                f"spec chat · {Path(session.model_path).name}"
                + (f" + {Path(session.draft_path).name}" if session.draft_path else "")
                + f" · drafter {repl.drafter.name} · context {session.target.n_ctx} tokens",
                [
                    "/help for commands · Ctrl-C stops an answer · Ctrl-D quits",
                    *(
                        [f"continuing {conversation.exchanges} exchange(s) from {load}"]
                        if load
                        else []
                    ),
                ],
            )
            repl.run()
        finally:
            repl.close()
        if received.sigterm:
            sys.exit(130)
        if repl.failed and not terminal.interactive:
            # Each error was shown as it happened; a script must also see that some failed.
            raise SpecError(f"{repl.failed} of the piped messages and commands failed")
