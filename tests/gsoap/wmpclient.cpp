// wmpclient: a strict-client probe for the wmproxy service, built from the REFERENCE WSDL with
// gSOAP (wsdl2h + soapcpp2 -j -C, see build.py). One operation per invocation.
//
//   wmpclient [--dump] <endpoint> <proxy-file> <ca-dir> <operation> [arguments...]
//
// The proxy file (certificate, key, chain) is the TLS client credential; the server is verified
// against <ca-dir> only (hashed grid CA directory, no system CAs).
//
// ("getProxyReq"/"putProxy" are delegation-2; suffix 1 = delegation-1, W = the WMProxy port.)
//
// Output (stdout) is one "key=value" line per field, with "\" and newlines escaped as "\\" and
// "\n". Every field the operation returns is printed, also when gSOAP read nothing into it (an
// empty value then reveals a reply gSOAP could not map, e.g. a qualified or misnamed accessor);
// nillable fields also print "<key>.nil=0|1" and lists print "<key>.count=N" then "<key>[i]=...".
//
// Exit status: 0 success; 2 SOAP fault (fault.string/fault.code, and when gSOAP deserialized a
// typed detail: fault.element, fault.ns and the element's members); 1 anything else (usage,
// transport or TLS error, reply gSOAP could not parse: error.code/error.string).
// --dump copies the raw HTTP exchange (decrypted) to stderr between "=== sent ===" and
// "=== received ===" markers.

#include "soapWMProxyProxy.h"
#include "soapDelegationSoapBindingProxy.h"
#include "soapDelegation1SoapBindingProxy.h"
#include "WMProxy.nsmap"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

bool g_dump = false;
int (*g_fsend)(struct soap *, const char *, size_t) = nullptr;
size_t (*g_frecv)(struct soap *, char *, size_t) = nullptr;
bool g_in_recv = false;

int dump_send(struct soap *soap, const char *buf, size_t len) {
    static bool first = true;
    if (first) {
        std::cerr << "=== sent ===\n";
        first = false;
    }
    std::cerr.write(buf, static_cast<std::streamsize>(len));
    return g_fsend(soap, buf, len);
}

size_t dump_recv(struct soap *soap, char *buf, size_t len) {
    size_t n = g_frecv(soap, buf, len);
    if (!g_in_recv) {
        std::cerr << "\n=== received ===\n";
        g_in_recv = true;
    }
    std::cerr.write(buf, static_cast<std::streamsize>(n));
    return n;
}

std::string escape(const std::string &s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else {
            out += c;
        }
    }
    return out;
}

void put(const std::string &key, const std::string &value) {
    std::cout << key << '=' << escape(value) << '\n';
}

void put(const std::string &key, long long value) { std::cout << key << '=' << value << '\n'; }

void put_nillable(const std::string &key, const std::string *value) {
    put(key + ".nil", value == nullptr ? 1 : 0);
    put(key, value == nullptr ? std::string() : *value);
}

void put_list(const std::string &key, const std::vector<std::string> &items) {
    put(key + ".count", static_cast<long long>(items.size()));
    for (size_t i = 0; i < items.size(); ++i) {
        put(key + "[" + std::to_string(i) + "]", items[i]);
    }
}

void put_string_list(const std::string &key, const ns1__StringList *list) {
    put(key + ".nil", list == nullptr ? 1 : 0);
    static const std::vector<std::string> none;
    put_list(key + ".Item", list == nullptr ? none : list->Item);
}

void put_time(const std::string &key, time_t t) {
    put(key, static_cast<long long>(t));
    char iso[32] = "";
    struct tm tm_utc;
    if (t != 0 && gmtime_r(&t, &tm_utc) != nullptr) {
        strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm_utc);
    }
    put(key + ".iso", iso);
}

void put_base_fault(const char *element, const ns1__BaseFaultType *f) {
    put("fault.element", element);
    put("fault.ns", "http://glite.org/wms/wmproxy");
    put("fault.methodName", f->methodName);
    put_time("fault.Timestamp", f->Timestamp);
    put_nillable("fault.ErrorCode", f->ErrorCode);
    put_nillable("fault.Description", f->Description);
    put_list("fault.FaultCause", f->FaultCause);
}

// Prints what went wrong; returns the exit status: 2 for a SOAP fault, 1 otherwise.
int report_error(struct soap *soap) {
    if (soap->error != SOAP_FAULT) {
        const char **code = soap_faultcode(soap);
        const char **text = soap_faultstring(soap);
        put("error.code", static_cast<long long>(soap->error));
        put("error.string", std::string(*code ? *code : "") + ": " + (*text ? *text : ""));
        const char **detail = soap_faultdetail(soap);
        put("error.detail", *detail ? *detail : "");
        soap_print_fault(soap, stderr);
        return 1;
    }
    const char **code = soap_faultcode(soap);
    const char **text = soap_faultstring(soap);
    put("fault.code", *code ? *code : "");
    put("fault.string", *text ? *text : "");
    const SOAP_ENV__Detail *d = nullptr;
    if (soap->fault != nullptr) {
        d = soap->fault->detail != nullptr ? soap->fault->detail : soap->fault->SOAP_ENV__Detail;
    }
    put("fault.detail", d == nullptr ? 0 : 1);
    if (d == nullptr) {
        put("fault.element", "");
        return 2;
    }
    if (d->ns1__AuthenticationFault) put_base_fault("AuthenticationFault", d->ns1__AuthenticationFault);
    else if (d->ns1__AuthorizationFault) put_base_fault("AuthorizationFault", d->ns1__AuthorizationFault);
    else if (d->ns1__GenericFault) put_base_fault("GenericFault", d->ns1__GenericFault);
    else if (d->ns1__GetQuotaManagementFault) put_base_fault("GetQuotaManagementFault", d->ns1__GetQuotaManagementFault);
    else if (d->ns1__InvalidArgumentFault) put_base_fault("InvalidArgumentFault", d->ns1__InvalidArgumentFault);
    else if (d->ns1__JobUnknownFault) put_base_fault("JobUnknownFault", d->ns1__JobUnknownFault);
    else if (d->ns1__NoSuitableResourcesFault) put_base_fault("NoSuitableResourcesFault", d->ns1__NoSuitableResourcesFault);
    else if (d->ns1__OperationNotAllowedFault) put_base_fault("OperationNotAllowedFault", d->ns1__OperationNotAllowedFault);
    else if (d->ns1__ServerOverloadedFault) put_base_fault("ServerOverloadedFault", d->ns1__ServerOverloadedFault);
    else if (d->deleg2__DelegationException) {
        put("fault.element", "DelegationException");
        put("fault.ns", "http://www.gridsite.org/namespaces/delegation-2");
        put_nillable("fault.msg", d->deleg2__DelegationException->msg);
    } else if (d->deleg1__DelegationException) {
        put("fault.element", "DelegationException");
        put("fault.ns", "http://www.gridsite.org/namespaces/delegation-1");
        put_nillable("fault.message", d->deleg1__DelegationException->message);
    } else {
        // a <detail> whose content matched none of the WSDL's fault elements
        put("fault.element", "");
        put("fault.any", d->__any ? d->__any : "");
    }
    return 2;
}

std::string read_file(const char *path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::cerr << "cannot read " << path << '\n';
        std::exit(1);
    }
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void usage() {
    std::cerr << "usage: wmpclient [--dump] <endpoint> <proxy-file> <ca-dir> <operation> [args...]\n"
                 "operations: getVersion | getVersion2 | getInterfaceVersion | getNewProxyReq | renewProxyReq ID |\n"
                 "  destroy ID | getProxyReq ID | getProxyReq1 ID | getProxyReqW ID |\n"
                 "  putProxy ID PEMFILE | putProxy1 ID PEMFILE | putProxyW ID PEMFILE | getTerminationTime ID |\n"
                 "  jobRegister JDLFILE DELEGATIONID | jobSubmit JDLFILE DELEGATIONID | jobStart JOBID |\n"
                 "  getJobStatus JOBID | getSandboxDestURI JOBID PROTO | getSandboxBulkDestURI JOBID PROTO |\n"
                 "   getOutputFileList JOBID PROTO | getMaxInputSandboxSize |\n"
                 "  getTransferProtocols | getJDL JOBID ORIGINAL|REGISTERED | jobCancel JOBID | jobPurge JOBID\n";
    std::exit(1);
}

}  // namespace

int main(int argc, char **argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && args[0] == "--dump") {
        g_dump = true;
        args.erase(args.begin());
    }
    if (args.size() < 4) usage();
    const std::string endpoint = args[0], proxy = args[1], cadir = args[2], op = args[3];
    std::vector<std::string> a(args.begin() + 4, args.end());
    auto need = [&](size_t n) {
        if (a.size() != n) usage();
    };

    soap_ssl_init();
    struct soap *soap = soap_new();
    if (soap_ssl_client_context(soap, SOAP_SSL_REQUIRE_SERVER_AUTHENTICATION | SOAP_SSL_NO_DEFAULT_CA_PATH | SOAP_TLSv1,
                                proxy.c_str(), nullptr, nullptr, cadir.c_str(), nullptr) != SOAP_OK) {
        report_error(soap);
        return 1;
    }
    soap->connect_timeout = 30;
    soap->send_timeout = soap->recv_timeout = 60;

    WMProxyProxy wmp(soap);
    DelegationSoapBindingProxy d2(soap);
    Delegation1SoapBindingProxy d1(soap);
    // the proxies' init reset the I/O callbacks only through soap_init, which ran before: hook now
    if (g_dump) {
        g_fsend = soap->fsend;
        g_frecv = soap->frecv;
        soap->fsend = dump_send;
        soap->frecv = dump_recv;
    }
    wmp.soap_endpoint = d2.soap_endpoint = d1.soap_endpoint = endpoint.c_str();

    int rc = SOAP_OK;
    if (op == "getVersion") {
        need(0);
        ns1__getVersionResponse r;
        if ((rc = wmp.getVersion(r)) == SOAP_OK) put("version", r.version);
    } else if (op == "getVersion2") {
        need(0);
        deleg2__getVersionResponse r;
        if ((rc = d2.getVersion(r)) == SOAP_OK) put("getVersionReturn", r.getVersionReturn);
    } else if (op == "getInterfaceVersion") {
        need(0);
        deleg2__getInterfaceVersionResponse r;
        if ((rc = d2.getInterfaceVersion(r)) == SOAP_OK) put("getInterfaceVersionReturn", r.getInterfaceVersionReturn);
    } else if (op == "getNewProxyReq") {
        need(0);
        deleg2__getNewProxyReqResponse r;
        if ((rc = d2.getNewProxyReq(r)) == SOAP_OK) {
            const deleg2__NewProxyReq *n = r.getNewProxyReqReturn;
            put("getNewProxyReqReturn.nil", n == nullptr ? 1 : 0);
            put_nillable("proxyRequest", n ? n->proxyRequest : nullptr);
            put_nillable("delegationID", n ? n->delegationID : nullptr);
        }
    } else if (op == "renewProxyReq") {
        need(1);
        deleg2__renewProxyReqResponse r;
        if ((rc = d2.renewProxyReq(a[0], r)) == SOAP_OK) put("renewProxyReqReturn", r._renewProxyReqReturn);
    } else if (op == "destroy") {
        need(1);
        deleg2__destroyResponse r;
        if ((rc = d2.destroy(a[0], r)) == SOAP_OK) put("ok", 1);
    } else if (op == "getProxyReq") {
        need(1);
        deleg2__getProxyReqResponse r;
        if ((rc = d2.getProxyReq(a[0], r)) == SOAP_OK) put("getProxyReqReturn", r._getProxyReqReturn);
    } else if (op == "getProxyReq1") {
        need(1);
        deleg1__getProxyReqResponse r;
        if ((rc = d1.getProxyReq(a[0], r)) == SOAP_OK) put("getProxyReqReturn", r._getProxyReqReturn);
    } else if (op == "getProxyReqW") {
        need(1);
        ns1__getProxyReqResponse r;
        if ((rc = wmp.getProxyReq(a[0], r)) == SOAP_OK) put("request", r._request);
    } else if (op == "putProxy") {
        need(2);
        deleg2__putProxyResponse r;
        if ((rc = d2.putProxy(a[0], read_file(a[1].c_str()), r)) == SOAP_OK) put("ok", 1);
    } else if (op == "putProxy1") {
        need(2);
        deleg1__putProxyResponse r;
        if ((rc = d1.putProxy(a[0], read_file(a[1].c_str()), r)) == SOAP_OK) put("ok", 1);
    } else if (op == "putProxyW") {
        need(2);
        ns1__putProxyResponse r;
        if ((rc = wmp.putProxy(a[0], read_file(a[1].c_str()), r)) == SOAP_OK) put("ok", 1);
    } else if (op == "getTerminationTime") {
        need(1);
        deleg2__getTerminationTimeResponse r;
        r._getTerminationTimeReturn = 0;
        if ((rc = d2.getTerminationTime(a[0], r)) == SOAP_OK) put_time("getTerminationTimeReturn", r._getTerminationTimeReturn);
    } else if (op == "jobRegister") {
        need(2);
        ns1__jobRegisterResponse r;
        if ((rc = wmp.jobRegister(read_file(a[0].c_str()), a[1], r)) == SOAP_OK) {
            const ns1__JobIdStructType *s = r._jobIdStruct;
            put("jobIdStruct.nil", s == nullptr ? 1 : 0);
            put("id", s ? s->id : "");
            put_nillable("name", s ? s->name : nullptr);
            put_nillable("path", s ? s->path : nullptr);
            put("childrenJob.count", s ? static_cast<long long>(s->childrenJob.size()) : 0);
        }
    } else if (op == "jobSubmit") {
        need(2);
        ns1__jobSubmitResponse r;
        if ((rc = wmp.jobSubmit(read_file(a[0].c_str()), a[1], r)) == SOAP_OK) {
            const ns1__JobIdStructType *s = r._jobIdStruct;
            put("jobIdStruct.nil", s == nullptr ? 1 : 0);
            put("id", s ? s->id : "");
            put_nillable("name", s ? s->name : nullptr);
            put_nillable("path", s ? s->path : nullptr);
            put("childrenJob.count", s ? static_cast<long long>(s->childrenJob.size()) : 0);
        }
    } else if (op == "jobStart") {
        need(1);
        ns1__jobStartResponse r;
        if ((rc = wmp.jobStart(a[0], r)) == SOAP_OK) put("ok", 1);
    } else if (op == "jobCancel") {
        need(1);
        ns1__jobCancelResponse r;
        if ((rc = wmp.jobCancel(a[0], r)) == SOAP_OK) put("ok", 1);
    } else if (op == "jobPurge") {
        need(1);
        ns1__jobPurgeResponse r;
        if ((rc = wmp.jobPurge(a[0], r)) == SOAP_OK) put("ok", 1);
    } else if (op == "getJobStatus") {
        need(1);
        ns1__getJobStatusResponse r;
        if ((rc = wmp.getJobStatus(a[0], r)) == SOAP_OK) {
            const ns1__JobStatusStructType *s = r.JobStatusStruct;
            put("JobStatusStruct.nil", s == nullptr ? 1 : 0);
            put("jobid", s ? s->jobid : "");
            put("status", s ? s->status : "");
            put("childrenJob.count", s ? static_cast<long long>(s->childrenJob.size()) : 0);
        }
    } else if (op == "getSandboxDestURI") {
        need(2);
        ns1__getSandboxDestURIResponse r;
        if ((rc = wmp.getSandboxDestURI(a[0], a[1], r)) == SOAP_OK) put_string_list("path", r._path);
    } else if (op == "getSandboxBulkDestURI") {
        need(2);
        ns1__getSandboxBulkDestURIResponse r;
        if ((rc = wmp.getSandboxBulkDestURI(a[0], a[1], r)) == SOAP_OK) {
            const ns1__DestURIsStructType *l = r._DestURIsStructType;
            put("DestURIsStructType.nil", l == nullptr ? 1 : 0);
            put("Item.count", l ? static_cast<long long>(l->Item.size()) : 0);
            for (size_t i = 0; l && i < l->Item.size(); ++i) {
                const std::string k = "Item[" + std::to_string(i) + "]";
                static const std::vector<std::string> none;
                put(k + ".id", l->Item[i] ? l->Item[i]->id : "");
                put_list(k + ".Item", l->Item[i] ? l->Item[i]->Item : none);
            }
        }
    } else if (op == "getOutputFileList") {
        need(2);
        ns1__getOutputFileListResponse r;
        if ((rc = wmp.getOutputFileList(a[0], a[1], r)) == SOAP_OK) {
            const ns1__StringAndLongList *l = r._OutputFileAndSizeList;
            put("OutputFileAndSizeList.nil", l == nullptr ? 1 : 0);
            put("file.count", l ? static_cast<long long>(l->file.size()) : 0);
            for (size_t i = 0; l && i < l->file.size(); ++i) {
                const std::string k = "file[" + std::to_string(i) + "]";
                put(k + ".name", l->file[i] ? l->file[i]->name : "");
                put(k + ".size", l->file[i] ? static_cast<long long>(l->file[i]->size) : -1);
            }
        }
    } else if (op == "getMaxInputSandboxSize") {
        need(0);
        ns1__getMaxInputSandboxSizeResponse r;
        r.size = -1;
        if ((rc = wmp.getMaxInputSandboxSize(r)) == SOAP_OK) put("size", static_cast<long long>(r.size));
    } else if (op == "getTransferProtocols") {
        need(0);
        ns1__getTransferProtocolsResponse r;
        if ((rc = wmp.getTransferProtocols(r)) == SOAP_OK) put_string_list("items", r.items);
    } else if (op == "getJDL") {
        need(2);
        enum ns1__JdlType type;
        if (soap_s2ns1__JdlType(soap, a[1].c_str(), &type) != SOAP_OK) usage();
        ns1__getJDLResponse r;
        if ((rc = wmp.getJDL(a[0], type, r)) == SOAP_OK) put("jdl", r._jdl);
    } else {
        usage();
    }
    int status = rc == SOAP_OK ? 0 : report_error(soap);
    std::cout.flush();
    if (g_dump) std::cerr << "\n=== end ===\n";
    soap_destroy(soap);
    soap_end(soap);
    soap_free(soap);
    return status;
}
