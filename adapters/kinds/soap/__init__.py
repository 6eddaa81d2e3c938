"""The SOAP adapter kind: sectors reached through their WSDL (zeep), SOAP 1.1 and 1.2."""
