"""moto_server, checking SigV4 query strings as AWS does.

Run with a python that has moto: `python3 tests/moto_strict.py -H 127.0.0.1 -p PORT`.

moto checks a request's signature by rebuilding it with botocore from werkzeug's request.url,
which decodes the query ("prefix=a%2Fb" becomes "prefix=a/b"); botocore then takes that query
as it is, so moto expects a signature over "prefix=a/b", which AWS refuses: SigV4 signs every
query value URI-encoded, '/' as %2F (AWS's "Create a canonical request"). Here moto hands
botocore the parameters instead, which botocore encodes as AWS does, so a client is held to
AWS's rule and nothing else.

And AWS's STS takes AssumeRoleWithWebIdentity unsigned (the web identity token is the proof),
where moto with authentication on fails it with a KeyError on the Authorization header (500):
here it goes through unsigned, as at AWS. AssumeRole, which AWS takes only signed by the
caller's keys, moto answers without looking at its signature: here it is checked as every
other request is.
"""
import sys
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam import access_control
from moto.sts.responses import TokenResponse

_create = access_control.IAMRequestBase._create_aws_request


def _create_aws_request(self):
    req = _create(self)
    parts = urlsplit(req.url)
    if parts.query:
        req.params = parse_qsl(parts.query, keep_blank_values=True)
        req.url = urlunsplit(parts._replace(query=''))
    return req


access_control.IAMRequestBase._create_aws_request = _create_aws_request

_authorize = ActionAuthenticatorMixin._authenticate_and_authorize_action
UNSIGNED = {'AssumeRoleWithWebIdentity', 'AssumeRoleWithSAML'}


def _authenticate_and_authorize_action(self, iam_request_cls, resource='*'):
    if self._get_action().split(':')[-1] in UNSIGNED:
        return None
    return _authorize(self, iam_request_cls, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_and_authorize_action

_assume_role = TokenResponse.assume_role


def assume_role(self):
    self._authenticate_and_authorize_normal_action()
    return _assume_role(self)


TokenResponse.assume_role = assume_role

if __name__ == '__main__':
    from moto.server import main
    sys.exit(main())
