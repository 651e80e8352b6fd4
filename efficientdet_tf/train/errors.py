"""The errors of the trainer: bad input reported in one line, and a loss that stopped being finite."""


class TrainError(ValueError):
    """Bad input or state found before (or instead of) training: the message is one clear line."""


class NonFiniteLossError(TrainError):
    """The loss became NaN or Inf; nothing after the last good checkpoint was saved."""
