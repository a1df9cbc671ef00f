
none