"""The SOAP edge: Spyne ports of the WMProxy and gridsite delegation contracts.

Only this package imports Spyne. It turns requests into service calls and results
into the reference's rpc/literal XML (wrapper in the port namespace, every part and
nested element unqualified), and domain exceptions into the WSDL faults.
"""

from wmproxy.soap import _spyne_compat

# Before any Spyne module: Spyne 2.14.0 on Python 3.12/3.13 (see _spyne_compat).
_spyne_compat.install()
