"""Namespaces of the three ports served at ``/glite_wms_wmproxy_server`` (§1.1)."""

WMPROXY = "http://glite.org/wms/wmproxy"
DELEGATION_1 = "http://www.gridsite.org/namespaces/delegation-1"
DELEGATION_2 = "http://www.gridsite.org/namespaces/delegation-2"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
INSPECTION = "http://wmproxy.org/namespaces/inspection-1"
