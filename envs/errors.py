"""The one error family of peam. It lives in `envs`, the lowest package, so every layer can
raise it; the CLI prints its message on one line and exits with `exit_code`."""


class PeamError(Exception):
    """A problem the user can mend; the message says how."""

    exit_code = 2


class UnknownEnvError(PeamError):
    pass


class UnknownTaskError(PeamError):
    pass


class ConfigError(PeamError):
    pass


class GameCrashedError(PeamError):
    """The game's process died mid-episode: the episode fails, the run goes on."""
