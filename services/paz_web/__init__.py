"""paz-web: the dashboard, talking only to the orchestrator."""

from paz.launch import entry

main = entry(__name__)
