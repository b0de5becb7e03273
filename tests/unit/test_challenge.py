"""WWW-Authenticate parsing (pure): real-world header variants, and properties with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regauthd.probe.challenge import Challenge, find, parse_challenges, parse_header, parse_scope


def only(headers: list[str]) -> Challenge:
    (challenge,) = parse_challenges(headers)
    return challenge


# Headers as real registries send them (copied from their responses).
REAL_WORLD = [
    (
        # Docker Hub, /v2/
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"',
        "bearer",
        {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"},
    ),
    (
        # Docker Hub, a manifest: the scope holds a comma inside quotes
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull,push",error="insufficient_scope"',
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/alpine:pull,push",
            "error": "insufficient_scope",
        },
    ),
    (
        # GitHub Container Registry
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull"',
        "bearer",
        {
            "realm": "https://ghcr.io/token",
            "service": "ghcr.io",
            "scope": "repository:user/image:pull",
        },
    ),
    (
        # distribution with htpasswd
        'Basic realm="basic-realm"',
        "basic",
        {"realm": "basic-realm"},
    ),
    (
        # Amazon ECR
        'Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com"',
        "basic",
        {
            "realm": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",
            "service": "ecr.amazonaws.com",
        },
    ),
    (
        # Google Artifact Registry / GCR
        'Bearer realm="https://us-docker.pkg.dev/v2/token",service="us-docker.pkg.dev"',
        "bearer",
        {"realm": "https://us-docker.pkg.dev/v2/token", "service": "us-docker.pkg.dev"},
    ),
    (
        # Azure Container Registry
        'Bearer realm="https://myreg.azurecr.io/oauth2/token",service="myreg.azurecr.io"',
        "bearer",
        {"realm": "https://myreg.azurecr.io/oauth2/token", "service": "myreg.azurecr.io"},
    ),
    (
        # Harbor, with a space after commas
        'Bearer realm="https://harbor.example.com/service/token", service="harbor-registry"',
        "bearer",
        {"realm": "https://harbor.example.com/service/token", "service": "harbor-registry"},
    ),
    (
        # Quay: several scopes separated by a space
        'Bearer realm="https://quay.io/v2/auth",service="quay.io",'
        'scope="repository:org/a:pull repository:org/b:pull,push"',
        "bearer",
        {
            "realm": "https://quay.io/v2/auth",
            "service": "quay.io",
            "scope": "repository:org/a:pull repository:org/b:pull,push",
        },
    ),
    (
        # Unquoted URL values (Nexus and some proxies)
        "Bearer realm=https://nexus.example.com/v2/token,service=https://nexus.example.com/v2/token",
        "bearer",
        {
            "realm": "https://nexus.example.com/v2/token",
            "service": "https://nexus.example.com/v2/token",
        },
    ),
]


@pytest.mark.parametrize(("header", "scheme", "params"), REAL_WORLD)
def test_real_world_headers(header: str, scheme: str, params: dict[str, str]) -> None:
    challenge = only([header])
    assert challenge.scheme == scheme
    assert dict(challenge.params) == params
    assert challenge.token68 is None


def test_scheme_and_parameter_names_are_case_insensitive() -> None:
    challenge = only(['BEARER Realm="https://r/t",SERVICE="svc"'])
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://r/t"
    assert challenge.get("Service") == "svc"


def test_several_challenges_in_one_header() -> None:
    header = 'Basic realm="Registry, with a comma", Bearer realm="https://a/token",service="s"'
    basic, bearer = parse_header(header)
    assert (basic.scheme, basic.realm) == ("basic", "Registry, with a comma")
    assert (bearer.scheme, bearer.realm, bearer.service) == ("bearer", "https://a/token", "s")


def test_several_headers_keep_their_order() -> None:
    challenges = parse_challenges(['Basic realm="one"', 'Bearer realm="https://two/t"'])
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert find(challenges, "BEARER") is challenges[1]
    assert find(challenges, "negotiate") is None


def test_quoted_values_with_escapes_spaces_and_equals() -> None:
    challenge = only([r'Basic realm="say \"hi\", a=b c"'])
    assert challenge.realm == 'say "hi", a=b c'


def test_token68_challenges() -> None:
    negotiate, ntlm, basic = parse_challenges(["Negotiate YIIabc+/==, NTLM", 'Basic realm="r"'])
    assert (negotiate.scheme, negotiate.token68) == ("negotiate", "YIIabc+/==")
    assert (ntlm.scheme, ntlm.token68, dict(ntlm.params)) == ("ntlm", None, {})
    assert basic.realm == "r"


def test_whitespace_around_equals_and_empty_list_elements() -> None:
    challenge = only([' ,  Bearer   realm = "x" ,,  service="y" , '])
    assert dict(challenge.params) == {"realm": "x", "service": "y"}


def test_first_value_of_a_repeated_parameter_wins() -> None:
    assert only(['Bearer realm="first",realm="second"']).realm == "first"


def test_bearer_scope_and_error_accessors() -> None:
    challenge = only(
        ['Bearer realm="r",scope="repository:a:pull repository:b:push,pull",error="invalid_token"']
    )
    assert challenge.scopes == ("repository:a:pull", "repository:b:push,pull")
    assert challenge.error == "invalid_token"
    assert only(['Bearer realm="r"']).scopes == ()


@pytest.mark.parametrize(
    "header",
    ["", ",,,", "   ", '"', '="x"', 'realm="orphan"', "\x00\x01", "Bearer realm="],
)
def test_malformed_input_never_raises(header: str) -> None:
    challenges = parse_header(header)
    assert all(c.scheme for c in challenges)


def test_unterminated_quote_keeps_what_is_there() -> None:
    assert only(['Bearer realm="https://a/t']).realm == "https://a/t"


def test_parameter_before_any_scheme_is_skipped() -> None:
    assert [c.scheme for c in parse_header('realm="x", Basic realm="y"')] == ["basic"]


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("repository:team/app:pull,push", ("repository", "team/app", {"pull", "push"})),
        ("repository:team/app:push,pull", ("repository", "team/app", {"pull", "push"})),
        ("repository:a:", ("repository", "a", set())),
        ("registry:catalog:*", ("registry", "catalog", {"*"})),
        ("repository(plugin):x/y:pull", ("repository(plugin)", "x/y", {"pull"})),
    ],
)
def test_parse_scope(scope: str, expected: tuple[str, str, set[str]]) -> None:
    assert parse_scope(scope) == (expected[0], expected[1], frozenset(expected[2]))


@pytest.mark.parametrize("scope", ["", "repository", "repository:", ":a:pull", "a:pull"])
def test_parse_scope_refuses_garbage(scope: str) -> None:
    assert parse_scope(scope) is None


# Properties: whatever a server puts in quoted values, the parser gets it back.

_names = st.sampled_from(["realm", "service", "scope", "error", "Realm", "x-extra"])
_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=40
)
_schemes = st.sampled_from(["Bearer", "Basic", "bearer", "BASIC", "Digest", "X-Custom"])


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def _challenges(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    scheme = draw(_schemes)
    params = draw(st.dictionaries(_names, _values, max_size=4))
    # Names are case-insensitive: keep one spelling per lower-cased name.
    unique: dict[str, tuple[str, str]] = {}
    for name, value in params.items():
        unique.setdefault(name.lower(), (name, value))
    sep = draw(st.sampled_from([",", ", ", " , "]))
    rendered = sep.join(f"{name}={_quote(value)}" for name, value in unique.values())
    text = f"{scheme} {rendered}" if rendered else scheme
    return text, {k: v for k, (_, v) in unique.items()} | {"__scheme__": scheme.lower()}


@given(st.lists(_challenges(), min_size=1, max_size=4), st.booleans())
def test_rendered_challenges_parse_back(
    items: list[tuple[str, dict[str, str]]], one_header: bool
) -> None:
    headers = [", ".join(text for text, _ in items)] if one_header else [t for t, _ in items]
    parsed = parse_challenges(headers)
    assert len(parsed) == len(items)
    for challenge, (_, rendered) in zip(parsed, items, strict=True):
        expected = dict(rendered)
        assert challenge.scheme == expected.pop("__scheme__")
        assert dict(challenge.params) == expected


@given(st.text(max_size=200))
def test_any_text_parses_without_raising(text: str) -> None:
    for challenge in parse_header(text):
        assert challenge.scheme == challenge.scheme.lower()
