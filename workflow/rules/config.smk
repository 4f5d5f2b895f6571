# The workflow config (config/workflow.yaml, `--config KEY=VALUE`), validated against
# workflow/schemas/config.schema.yaml before anything reads it. Every value lives in that file: no rule
# has a default of its own. A bad value ends the workflow with one line, as a bad suite does.
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from coopbench.base.errors import CoopbenchError


def config_error(err):
    """A config error ends the workflow with the one line `coopbench` prints for it (no traceback)."""
    print(f"coopbench: error: {' '.join(str(err).split())}", file=sys.stderr)
    sys.exit(2)


def config_value_error(error):
    """A jsonschema ValidationError as a CoopbenchError: which key, what it holds, what it must be."""
    where = ".".join(str(part) for part in error.absolute_path)
    if not where:  # a key that is unknown or missing
        return CoopbenchError(f"workflow config: {error.message}",
                              f"valid keys: {', '.join(error.schema['properties'])}")
    what = error.schema.get("description", "described in workflow/schemas/config.schema.yaml")
    return CoopbenchError(f"workflow config {where}={error.instance!r}: {error.message}",
                          f"{where} is {what}; set it in config/workflow.yaml or with --config")


try:
    validate(config, "../schemas/config.schema.yaml", set_default=False)  # the path is relative to this file
except WorkflowError as err:
    if err.__context__ is None:  # not a value's fault (the schema could not be read): snakemake's own message
        raise
    config_error(config_value_error(err.__context__))
