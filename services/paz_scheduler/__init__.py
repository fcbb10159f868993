"""paz-scheduler: deploy hooks, versioned zero-downtime deploys through a runtime driver, history and journal."""

from paz.launch import entry

main = entry(__name__)
