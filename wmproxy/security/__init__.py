"""X.509 material of the service: grid DNs, RFC 3820 proxies, chain verification,
gridsite-style delegation (getProxyReq/putProxy), sealing of stored secrets and a
throwaway test PKI.

The only package that uses ``cryptography`` (and pyOpenSSL, for ``X509Store`` chain
verification and ``subject_name_hash`` only). Depends on ``wmproxy.errors`` alone: no
database, SOAP or network, so everything here is pure and fast to test.

Modules: :mod:`.dn` (slash DNs), :mod:`.pci` (proxyCertInfo ASN.1), :mod:`.chain`
(PEM chains, proxy tests, verification), :mod:`.proxy` (credentials, making and signing
proxies), :mod:`.delegation` (server side of putProxy), :mod:`.sealing` (Fernet),
:mod:`.pki` (demo/test CA, ``python -m wmproxy.security.pki DIR``), :mod:`.proxy_info`
(typed getProxyInfo data), :mod:`.renewed` (checks on renewed proxies) and :mod:`.myproxy`
(the X.509 side of the MyProxy protocol).
"""
