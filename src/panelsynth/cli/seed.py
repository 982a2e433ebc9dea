"""The seed's entry point:
``python run_data_gen_pipeline.py wave_num model model_dir_name API_KEY``.

Run inside a workspace, it does what the original script did: prints the settings, asks
"Continue? (y/N)", and runs the three steps for the wave. ``--yes`` skips the question and a
non-interactive stdin never blocks on it. Settings (n_examples, n_outputs, n_batches, seed, mode)
come from the workspace's ``panelsynth.toml``, as the original kept them at the top of ``main()``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from panelsynth.errors import PanelsynthError

USAGE = (
    "python run_data_gen_pipeline.py wave_num model model_dir_name API_KEY [--yes] [--resume] "
    "[--restart] [--mode dense|full] [--trust-workspace-models]"
)


def main(argv: list[str] | None = None, script_dir: str | Path | None = None) -> int:
    """Entry point of the seed-compatible script; returns the exit code.

    The workspace is the script's own folder when it is one (has ``panelsynth.toml`` or
    ``Original data/``), else the current directory, as the original script assumed.
    """
    parser = argparse.ArgumentParser(prog="run_data_gen_pipeline.py", usage=USAGE)
    parser.add_argument("wave_num", help="wave id, e.g. 1 or 8a")
    parser.add_argument(
        "model", help="{provider}/{model_name}, e.g. anthropic/claude-sonnet-4-20250514"
    )
    parser.add_argument("model_dir_name", help="output folder name for this model")
    parser.add_argument(
        "API_KEY",
        help="API key: @FILE reads it from a file; 'none' uses the provider's environment "
        "variable (or no key for local models); a literal key is visible to other users in ps",
    )
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument(
        "--restart", action="store_true", help="start over, keeping the old checkpoint aside"
    )
    parser.add_argument("--mode", choices=["dense", "full"], default=None)
    parser.add_argument(
        "--trust-workspace-models",
        action="store_true",
        help="import the workspace's pydantic_models/*.py (Python code) for its row models",
    )
    args = parser.parse_args(argv)
    try:
        return _run(args, _workspace_root(script_dir))
    except PanelsynthError as err:
        print(f"Error: {err}", file=sys.stderr)
        return err.exit_code


def _workspace_root(script_dir: str | Path | None) -> Path:
    if script_dir is not None:
        d = Path(script_dir)
        if (d / "panelsynth.toml").exists() or (d / "Original data").is_dir():
            return d
    return Path.cwd()


def _run(args: argparse.Namespace, root: Path) -> int:
    from panelsynth.cli.waves import run_waves_with_progress
    from panelsynth.config import load_config
    from panelsynth.llm.keys import key_from_argument
    from panelsynth.run.plan import RunOptions, resolve_plan
    from panelsynth.runner import Confirmation, needs_yes_message, open_client, privacy_warning
    from panelsynth.workspace import Workspace, check_model_dir, check_wave_id

    ws = Workspace(root)
    config = load_config(ws.config_path)
    wave = check_wave_id(args.wave_num)
    model_dir = check_model_dir(args.model_dir_name)
    key, key_warning = key_from_argument(args.API_KEY, option="API_KEY", allow_stdin=False)
    if key_warning:
        print(key_warning.replace("--api-key @FILE", "@FILE as API_KEY"), file=sys.stderr)
    if key is not None and key.strip().lower() in ("", "none", "null", "-"):
        key = None
    client = open_client(args.model, api_key=key, config=config)
    options = RunOptions(
        mode=args.mode,
        resume=args.resume,
        restart=args.restart,
        trust_workspace_models=args.trust_workspace_models,
    )
    plan = resolve_plan(config, options, client)
    mode, n_examples, s = plan.mode, plan.n_examples, plan.settings
    print(f"Wave: {wave}")
    print(f"Model: {args.model} (folder: {model_dir})")
    print(
        f"Mode: {mode}; examples per cluster: {n_examples}; n_outputs: {s.n_outputs}; "
        f"n_batches: {s.n_batches}; rows: {s.wanted}; random_state: {s.seed}"
    )
    warning = privacy_warning(
        client,
        plan.examples,
        'set generation.examples = "synthetic" in panelsynth.toml',
    )
    if warning:
        print(warning, file=sys.stderr)
    refusal = needs_yes_message(client, plan.examples)
    if not Confirmation(assume_yes=args.yes, needs_yes=refusal)("Continue?", print):
        print("Aborted.")
        return 1
    run_waves_with_progress(
        ws.root,
        [wave],
        client,
        model_dir,
        options,
        config=config,
        resume_hint=lambda _w: _resume_hint(args),
    )
    return 0


def _resume_hint(args: argparse.Namespace) -> str:
    """The seed script's own command with --resume (the key only when it is not literal)."""
    key = args.API_KEY.strip()
    literal = not (key.startswith("@") or key.lower() in ("", "none", "null", "-"))
    cmd = [
        "python",
        "run_data_gen_pipeline.py",
        args.wave_num,
        args.model,
        args.model_dir_name,
        "API_KEY" if literal else key,
    ]
    if args.mode:
        cmd += ["--mode", args.mode]
    if args.yes:
        cmd.append("--yes")
    if args.trust_workspace_models:
        cmd.append("--trust-workspace-models")
    text = shlex.join([*cmd, "--resume"])
    return text + (" (API_KEY: your key, or @FILE)" if literal else "")
