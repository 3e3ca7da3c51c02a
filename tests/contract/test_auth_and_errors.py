"""Authentication and the OpenAI error envelope for unknown things."""

from __future__ import annotations

import openai
import pytest
import requests
from openai import OpenAI

from local.simulator import BatchSimulator


def test_wrong_key_is_401_and_the_key_is_masked(sim: BatchSimulator) -> None:
    wrong = "sk-SENTINEL-never-echo-this-9f3a"
    stranger = OpenAI(api_key=wrong, base_url=sim.base_url, max_retries=0)

    with pytest.raises(openai.AuthenticationError) as denied:
        stranger.batches.list()

    error = denied.value
    assert error.status_code == 401
    assert error.code == "invalid_api_key"
    assert error.type == "invalid_request_error"
    assert "sk-...9f3a" in error.message
    assert "SENTINEL" not in error.response.text
    assert sim.calls[-1] == ("GET", "/v1/batches", 401)
    assert sim.count("GET /v1/batches") == 0


def test_missing_authorization_header_is_401(sim: BatchSimulator) -> None:
    response = requests.get(f"{sim.base_url}/batches", timeout=5)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "You didn't provide an API key" in response.json()["error"]["message"]


def test_unknown_batch_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.batches.retrieve("batch_doesnotexist")
    assert missing.value.body == {
        "message": "No batch found with id 'batch_doesnotexist'.",
        "type": "invalid_request_error",
        "param": "batch_id",
        "code": None,
    }


def test_unknown_route_is_404_with_the_envelope(sim: BatchSimulator, client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.get("/fine_tuning/nothing", cast_to=object)
    assert missing.value.message.startswith("Error code: 404")
    assert missing.value.body["message"] == "Invalid URL (GET /v1/fine_tuning/nothing)"  # type: ignore[index]
    assert sim.calls[-1] == ("GET", "/v1/fine_tuning/nothing", 404)


def test_malformed_json_body_is_400(sim: BatchSimulator) -> None:
    response = requests.post(
        f"{sim.base_url}/batches",
        data=b"{nope",
        headers={"Authorization": "Bearer sk-contract-test-key-0000"},
        timeout=5,
    )
    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]
