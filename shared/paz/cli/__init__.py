"""The ``paz`` command (click): run the suite on this machine (:mod:`.suite_commands`, and the
supervisor it starts, :mod:`.supervise`) and the daily workflow against its orchestrator
(:mod:`.workflow`, :mod:`.certs`); how it prints and exits is :mod:`.output`'s."""

from __future__ import annotations

from pathlib import Path

import click


class Paz(click.Group):
    """The ``paz`` group, whose commands' modules are imported when a command is first asked for.

    ``paz supervise`` runs as long as the suite does: with only its own module imported it holds
    about 15 MB less than with every command's (requests, flask, cryptography, the etcd clients).
    Any other command, or a listing of them (help, the docs' reference), imports them all.
    """

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "supervise" and not self.commands:
            from .supervise import supervise

            return supervise
        self._add_all()
        return super().get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_all()
        return super().list_commands(ctx)

    def _add_all(self) -> None:
        if self.commands:
            return
        from . import certs, push, registry_commands, suite_commands, supervise, workflow

        for command in (*suite_commands.COMMANDS, supervise.supervise, *workflow.COMMANDS, *certs.COMMANDS,
                        push.push, registry_commands.registry):
            self.add_command(command)


@click.group(cls=Paz, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--state-dir", envvar="PAZ_STATE_DIR", default=".paz", show_default=True,
              help="where pid files, logs and etcd data of paz up live (PAZ_STATE_DIR)")
@click.option("--url", envvar="PAZ_URL", help="the orchestrator's URL (PAZ_URL); default: the address etcd announces")
@click.option("--token", envvar="PAZ_TOKEN", help="a paz token for changes (PAZ_TOKEN); default: paz up's admin token in the state folder")
@click.pass_context
def cli(ctx: click.Context, state_dir: str, url: str | None, token: str | None) -> None:
    """Run the paz suite on this machine, and deploy and watch its services.

    Exit codes: 0 done; 1 the action failed (a deploy that did not serve, a conflict); 2 a bad
    argument, or no such service, unit, version or part; 3 the suite could not be asked.
    """
    admin_token = Path(state_dir) / "admin.token"
    if token is None and admin_token.is_file():
        token = admin_token.read_text().strip()
    ctx.obj = {"state_dir": state_dir, "url": url, "token": token}


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="paz")
