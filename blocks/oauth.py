"""An OAuth2 client of the LMS, for Open edX REST APIs (the course catalog's discovery API)."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class OAuthClient(Block):
    """Client credentials the pipeline exchanges for a token (the client-credentials grant).

    The secret stays a secret: it reaches the pipeline only in memory, as upstream's
    ``[edx-rest-api]`` settings, never as a parameter, a log line or an artifact.

    Example:
        ```python
        from blocks.oauth import OAuthClient

        OAuthClient(auth_url="https://lms.example.org/oauth2/access_token",
                    client_id="analytics-pipeline", client_secret="...").save("discovery-client")
        ```
    """

    _block_type_name = "OAuth Client"
    _description = "An LMS OAuth2 client (client-credentials grant) for Open edX REST APIs."

    auth_url: str = Field(
        ..., description="The LMS token endpoint, e.g. https://lms/oauth2/access_token."
    )
    client_id: str = Field(..., description="The OAuth2 application's client id.")
    client_secret: SecretStr = Field(..., description="The OAuth2 application's client secret.")

    def rest_api_settings(self) -> dict[str, str]:
        """The ``[edx-rest-api]`` section the pipeline reads."""
        return {
            "auth_url": self.auth_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret.get_secret_value(),
        }
