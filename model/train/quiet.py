"""What `train.py` does not print: Lightning's advertising and warnings that do not apply.

Each is silenced where it comes from (one logger's filter, or a warning matched by its
message and the module that raises it), so everything else Lightning and torch say still
reaches the terminal.
"""

from __future__ import annotations

import logging
import warnings

# Lightning's rank-zero logger prints tips for its paid services at every fit.
ADVERTISING_LOGGER = "lightning.pytorch.utilities.rank_zero"
ADVERTISING_PREFIX = "💡 Tip:"

# (message regex, module regex) of warnings that do not apply to how Montage runs.
NOT_APPLICABLE = (
    # torch 2.13 deprecates LeafSpec, which Lightning 2.6's own pytree helper still builds.
    (r".*isinstance\(treespec, LeafSpec\)", r"lightning\.pytorch\.utilities\._pytree"),
    # The shard stream's length is exact per worker (model/data/loader.py): Lightning's
    # caution about IterableDatasets with __len__ under several workers does not apply.
    (r"Your `IterableDataset` has `__len__` defined", r"lightning\.pytorch\.utilities\.data"),
)


class _DropAdvertising(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ADVERTISING_PREFIX)


def quiet_lightning() -> None:
    """Install the filters above (idempotent)."""
    logger = logging.getLogger(ADVERTISING_LOGGER)
    if not any(isinstance(f, _DropAdvertising) for f in logger.filters):
        logger.addFilter(_DropAdvertising())
    for message, module in NOT_APPLICABLE:
        warnings.filterwarnings("ignore", message=message, module=module)
