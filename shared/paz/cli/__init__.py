"""The ``paz`` command (click): run the suite on this machine (:mod:`.suite_commands`) and the daily
workflow against its orchestrator (:mod:`.workflow`, :mod:`.certs`); how it prints and exits is :mod:`.output`'s."""

from __future__ import annotations

from pathlib import Path

import click

from . import certs, push, registry_commands, suite_commands, workflow


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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


for command in (*suite_commands.COMMANDS, *workflow.COMMANDS, *certs.COMMANDS, push.push, registry_commands.registry):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="paz")
