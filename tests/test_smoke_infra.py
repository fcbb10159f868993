import requests

from helpers import SESSION_ID, TEST_LABEL, wait_until


def test_image_serves_its_message(docker_engine, test_image):
    client = docker_engine.client()
    container = client.containers.run(
        test_image, detach=True, environment={"MESSAGE": "hello $(x); \"q\"\nline2"},
        ports={"8000/tcp": ("127.0.0.1", None)}, labels={TEST_LABEL: SESSION_ID},
    )
    container.reload()
    port = container.ports["8000/tcp"][0]["HostPort"]
    body = wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/cgi-bin/index", timeout=1).text, 10, what="page")
    assert body == "hello $(x); \"q\"\nline2"
