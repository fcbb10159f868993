"""paz-haproxy-sync: keeps HAProxy routing <service>.paz (and <service>.<domain>) to the live instances."""

from paz.launch import entry

main = entry(__name__)
