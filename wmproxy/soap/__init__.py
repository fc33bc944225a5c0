"""The SOAP edge: Spyne ports of the WMProxy and gridsite delegation contracts.

Only this package imports Spyne. It turns requests into service calls and results
into the reference's rpc/literal XML (wrapper in the port namespace, every part and
nested element unqualified), and domain exceptions into the WSDL faults.
"""
