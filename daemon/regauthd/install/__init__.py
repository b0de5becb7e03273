"""Installing regauthd as a service (``regauthd service``): systemd system and user units, a
launchd agent.

What the files say is pure (:mod:`~regauthd.install.units`, :mod:`~regauthd.install.launchd`,
:mod:`~regauthd.install.layout`); finding the running regauthd and checking that root may run it
is :mod:`~regauthd.install.executable`; writing, removing and asking the service manager is
:mod:`~regauthd.install.apply`.
"""
