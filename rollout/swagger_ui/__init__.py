"""The API's ``/docs`` without the internet: Swagger UI served from this package.

FastAPI's own ``/docs`` loads Swagger UI's script and style from a CDN, so it is a blank page
on a machine without the internet. :func:`install` serves them instead from ``dist/`` beside
this file: ``swagger-ui-bundle.js``, ``swagger-ui.css`` and the favicon of npm's
``swagger-ui-dist`` (version :data:`VERSION`, Apache-2.0: ``dist/LICENSE``, ``dist/NOTICE``,
and ``dist/swagger-ui-bundle.js.LICENSE.txt`` for what the bundle includes), copied unchanged
from its package. The page (FastAPI's :func:`~fastapi.openapi.docs.get_swagger_ui_html`)
names only paths of this API:

    GET /docs                      the Swagger UI page (no token needed, like /openapi.json)
    GET /docs/assets/{name}        one of :data:`ASSETS`, with its content type; 404 otherwise

The validator badge (which would call validator.swagger.io) is off. ReDoc (``/redoc``, also from
a CDN) is not served: create the app with ``docs_url=None, redoc_url=None`` and call
:func:`install`. To update: ``npm pack swagger-ui-dist@5``, copy the files of :data:`ASSETS` and
the licence files into ``dist/``, and change :data:`VERSION`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

VERSION = "5.35.0"
DIST = Path(__file__).parent / "dist"
ASSETS_PATH = "/docs/assets"
ASSETS: dict[str, str] = {  # name → content type
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def install(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Add ``GET /docs`` and ``GET /docs/assets/{name}`` to ``app`` (out of its OpenAPI)."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:  # only the listed files: never a path built from the request
            return JSONResponse(
                {
                    "error_code": "not_found",
                    "message": f"name: expected one of {', '.join(ASSETS)}, got {name[:80]!r}",
                },
                404,
            )
        return FileResponse(
            DIST / name,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )
