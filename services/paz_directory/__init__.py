"""paz-service-directory: the catalogue of services and the config their next deploy will use."""

from paz.launch import entry

# granian: the fastest server for its hot read (docs/explanation/benchmarks.md)
main = entry(__name__, server="granian")
