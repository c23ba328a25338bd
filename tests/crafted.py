"""A crafted pickle payload for the safe-loading tests: unpickling it would run a shell command."""

import os


class RunsCode:
    """Pickles to ``os.system("touch <marker>")`` — what a crafted ``.pt`` or CIFAR batch does. If ``marker``
    exists after a load, code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)
