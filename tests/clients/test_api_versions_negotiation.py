"""ApiVersions lists the APIs keel serves, and answers a too-new ApiVersions the KIP-511 way.

Clients start every connection with ApiVersions and pick each request's version from the
answer, so it must list every API of this step with ranges that hold the versions our
raw tests use. A client newer than the broker sends an ApiVersions version the broker
does not know; the broker must then answer with a v0 body, error UNSUPPORTED_VERSION (35),
and at least its own ApiVersions range, so the client can retry with a version it knows.
"""

import pytest

import kafka_wire as kw

# api key -> (name, a version that must be inside the advertised range)
REQUIRED = {
    0: ("Produce", 3),
    1: ("Fetch", 4),
    2: ("ListOffsets", 1),
    3: ("Metadata", 1),
    18: ("ApiVersions", 3),
    19: ("CreateTopics", None),
    20: ("DeleteTopics", None),
    22: ("InitProducerId", None),
    32: ("DescribeConfigs", None),
    37: ("CreatePartitions", None),
    60: ("DescribeCluster", None),
}


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions_lists_required_apis(broker, version):
    with kw.Connection(broker.bootstrap) as conn:
        resp = conn.api_versions(version)
    assert resp.error_code == kw.NONE
    missing = [name for key, (name, _) in REQUIRED.items() if key not in resp.api_keys]
    assert not missing, f"ApiVersions v{version} does not list {missing}"
    for key, (name, must_hold) in REQUIRED.items():
        lo, hi = resp.api_keys[key]
        assert 0 <= lo <= hi, f"{name}: bad range {lo}..{hi}"
        if must_hold is not None:
            assert lo <= must_hold <= hi, f"{name}: v{must_hold} not in {lo}..{hi}"


@pytest.mark.parametrize("beyond", ["max+1", "127"])
def test_unknown_api_versions_version_gets_v0_error_response(broker, beyond):
    with kw.Connection(broker.bootstrap) as conn:
        _, hi = conn.api_versions(0).api_keys[kw.API_API_VERSIONS]
        version = hi + 1 if beyond == "max+1" else 127
        # Newer ApiVersions requests are flexible: request header v2, compact body.
        cid = conn.send_request(kw.API_API_VERSIONS, version, kw.api_versions_request(3),
                                flexible_header=True)
        resp = kw.decode_api_versions_response(conn.recv_response(cid), 0)
        assert resp.error_code == kw.UNSUPPORTED_VERSION
        assert kw.API_API_VERSIONS in resp.api_keys, resp.api_keys
        assert resp.api_keys[kw.API_API_VERSIONS][1] == hi
        # The connection stays open: the retry with a supported version works.
        assert conn.api_versions(3).error_code == kw.NONE
