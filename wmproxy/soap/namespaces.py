"""Namespaces of the three ports served at ``/glite_wms_wmproxy_server`` (§1.1)."""

WMPROXY = "http://glite.org/wms/wmproxy"
DELEGATION_1 = "http://www.gridsite.org/namespaces/delegation-1"
DELEGATION_2 = "http://www.gridsite.org/namespaces/delegation-2"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
#: Extension operations of this implementation (job history and listing, issue 12); described
#: in ``wsdl/wmproxy-jobs.wsdl``, never in the reference WSDL.
JOBS_1 = "http://wmproxy.org/namespaces/jobs-1"
#: Live inspection of running jobs (issue 13); ``wsdl/wmproxy-inspection.wsdl``.
INSPECTION = "http://wmproxy.org/namespaces/inspection-1"
