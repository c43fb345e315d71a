"""tasks/steps/store.py's and tasks/steps/download.py's rules on plain inputs: how long a presigned URL may live,
curl's config quoting the URL, an error scrubbed down to the store's address (against moto's real S3 API
and real curl: tests/integration/test_store.py)."""
from __future__ import annotations

import pytest

from doit_stages.steps.download import curl_config, scrub
from doit_stages.steps.store import MAX_URL_SECONDS, url_seconds


# -- the presigned URL ------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds", [0, -1, MAX_URL_SECONDS + 1, 604800])
def test_url_lifetime_beyond_an_hour_is_refused(seconds):
    with pytest.raises(ValueError):
        url_seconds(seconds)


# -- a host pulls it --------------------------------------------------------------------------------
def test_curl_config_quotes_the_url():
    assert curl_config('http://h/a"b\\c?x=1') == b'url = "http://h/a\\"b\\\\c?x=1"\n'
    with pytest.raises(ValueError):
        curl_config("http://h/a\nb")


def test_scrub_keeps_the_address_only():
    err = "x\ncurl: (22) The requested URL returned error: 403 for http://h:1/b/k?X-Amz-Signature=abc\n"
    assert scrub(err, "http://h:1") == "curl: (22) The requested URL returned error: 403 for http://h:1"
