"""`rgrid run`'s option rule: rgrid's options may stand anywhere before `--`; an unknown
option before the script, or one close to an option rgrid knows, is refused (a mistyped
safety flag must not reach the script while the run goes ahead and spends money)."""

from __future__ import annotations

import typer
from typer.core import TyperCommand, TyperOption

from rgrid.errors import UserInputError


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def close_to(name: str, known: list[str]) -> str | None:
    """The known option a typed one most likely meant: it is a prefix of it, or within
    edit distance 2 (1 for short names, where 2 would match almost anything)."""
    bare = name.lstrip("-")
    best: tuple[int, str] | None = None
    for option in known:
        candidate = option.lstrip("-")
        if len(bare) >= 3 and candidate.startswith(bare):
            return option
        distance = edit_distance(bare, candidate)
        if distance <= (1 if len(bare) <= 4 else 2) and (best is None or distance < best[0]):
            best = (distance, option)
    return best[1] if best else None


def check_options(command: TyperCommand, ctx: typer.Context, args: list[str]) -> None:
    """Refuse unknown options before the script, and near-misses of known ones after it."""
    takes_value: dict[str, bool] = {}
    for param in command.get_params(ctx):
        if isinstance(param, TyperOption):
            for opt in [*param.opts, *param.secondary_opts]:
                takes_value[opt] = not (param.is_flag or param.count)
    long_names = sorted(opt for opt in takes_value if opt.startswith("--"))
    seen_script = False
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            return
        if not token.startswith("-") or token == "-" or _is_number(token):
            seen_script = True
            continue
        name = token.split("=", 1)[0]
        if name in takes_value:
            if takes_value[name] and "=" not in token:
                next(tokens, None)  # the option's value, whatever it looks like
            continue
        if not seen_script:
            raise UserInputError(
                f"unknown option {name} before the script",
                _suggestion(name, long_names) or "see `rgrid run --help`",
            )
        if name.startswith("--") and (meant := close_to(name, long_names)) is not None:
            raise UserInputError(
                f"unknown option {name}",
                f"did you mean {meant}? (the script's own options go after `--`)",
            )


def _suggestion(name: str, known: list[str]) -> str | None:
    meant = close_to(name, known) if name.startswith("--") else None
    return f"did you mean {meant}?" if meant else None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


class RunCommand(TyperCommand):
    """The run command with the option rule applied before click parses."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        check_options(self, ctx, args)
        return super().parse_args(ctx, args)
