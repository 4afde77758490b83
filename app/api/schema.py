"""``/schema``: the OpenAPI document and a Swagger UI served from our own files, behind the token."""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router

from app import __version__
from app.api.auth import require_token
from app.settings import Settings

PATH = "/schema"
ASSETS = Path(__file__).parent / "swagger_ui"  # swagger-ui-dist 5.35.0, see its README.md
BEARER = "bearer"
"""The name of the security scheme the /api controllers declare (``security = [{BEARER: []}]``)."""


def _schema_guard(
    connection: ASGIConnection[object, object, object, State], handler: BaseRouteHandler
) -> None:
    settings: Settings = connection.app.state.settings
    if settings.schema == "token":
        require_token(connection, handler)


def openapi_config(settings: Settings) -> OpenAPIConfig | None:
    """The schema pages for SMSFLOWS_SCHEMA: behind the API token, open, or not served at all."""
    if settings.schema == "off":
        return None
    assets = create_static_files_router(path="/assets", directories=[ASSETS], include_in_schema=False)
    swagger = SwaggerRenderPlugin(
        path="/",
        js_url=f"{PATH}/assets/swagger-ui-bundle.js",
        css_url=f"{PATH}/assets/swagger-ui.css",
        standalone_preset_js_url=f"{PATH}/assets/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{PATH}/assets/favicon-32x32.png'>",
    )
    return OpenAPIConfig(
        title="smsflows",
        version=__version__,
        render_plugins=[swagger, JsonRenderPlugin(), YamlRenderPlugin()],
        openapi_router=Router(PATH, route_handlers=[assets], guards=[_schema_guard]),
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="SMSFLOWS_API_TOKEN, sent as 'Authorization: Bearer <token>'",
                )
            }
        ),
    )
