"""`python -m rayop.operator`: the operator alone, in a fresh interpreter.

`rayop operator` parses its flags with the CLI framework (typer, which loads click, rich and pydantic) and
then replaces its process with this module (`exec`, same PID) so that none of that stays resident in a
process that runs for months: about 9 MiB of the operator's RSS. The parsed configuration arrives as JSON in
one environment variable (rayop.operator.config.CONFIG_ENV), removed before the operator starts.
"""

from __future__ import annotations

import os
import sys

from rayop.operator.config import CONFIG_ENV, OperatorConfig
from rayop.operator.main import main

if __name__ == "__main__":
    raw = os.environ.pop(CONFIG_ENV, None)
    if raw is None:
        sys.exit(f"{CONFIG_ENV} is not set: run `rayop operator`")
    sys.exit(main(OperatorConfig.from_json(raw)))
