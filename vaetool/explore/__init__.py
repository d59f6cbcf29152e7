"""``vaetool explore``: the latent space of a trained model in the browser.

:mod:`~vaetool.explore.explorer` computes what the page shows from a loaded model;
:mod:`~vaetool.explore.app` is the Starlette application (page, static files, JSON API);
:mod:`~vaetool.explore.server` holds the port and runs uvicorn. The web stack is the optional
``explore`` extra, imported only by ``app`` and ``server``.
"""
