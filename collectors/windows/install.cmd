@echo off
rem install.cmd - installs or upgrades tlsgate-collector as the Windows service
rem "tlsgate-collector": the Configuration Manager application's install program, also usable
rem by hand from an elevated prompt. It runs from the package folder, which holds:
rem   install.cmd, uninstall.cmd
rem   x86_64\tlsgate-collector.exe (+ LICENSES\)   for 64-bit Windows
rem   i686\tlsgate-collector.exe   (+ LICENSES\)   for 32-bit Windows
rem   collector.json                              the config (paths relative to it)
rem   ca.pem                                      the fleet CA
rem   site.secret                                 the site's enrollment secret, when the
rem                                               config's "enroll" gets the certificate
rem   certs\FQDN.pem, certs\FQDN.key               optional, pilots only (see README)
rem It picks the exe for the OS (also from a 32-bit cmd on 64-bit Windows), copies it to
rem %ProgramFiles%\tlsgate, the config and the CA to %ProgramData%\tlsgate, takes the host's
rem certificate from %ProgramData%\tlsgate\host.pem/host.key (pre-staged) or from the package's
rem certs\ folder - or, with site.secret in the package, copies the secret and lets the
rem collector enroll (it makes its own key) - then runs "tlsgate-collector service install"
rem and "service start".
rem Exit codes: 0 installed and serving (no reboot is ever needed), 1 the package or this host
rem lacks something (message says what), 2/3/4 tlsgate-collector's own (usage, bad config or
rem certificate, system error). Everything is also appended to
rem %ProgramData%\tlsgate\logs\install.log.
setlocal EnableExtensions
if not defined ProgramData (
    echo install.cmd: error: the ProgramData variable is not set
    exit /b 1
)
set "DATA=%ProgramData%\tlsgate"
if not exist "%DATA%\logs\" mkdir "%DATA%\logs"
if not exist "%DATA%\logs\" (
    echo install.cmd: error: cannot create %DATA%\logs
    exit /b 1
)
call :main >> "%DATA%\logs\install.log" 2>&1
set "RC=%ERRORLEVEL%"
echo install.cmd: exit %RC% (details in %DATA%\logs\install.log)
exit /b %RC%

:main
echo ==== install.cmd %DATE% %TIME% from %~dp0
set "PKG=%~dp0"

rem The OS's architecture: PROCESSOR_ARCHITEW6432 is set when a 32-bit cmd runs on 64-bit
rem Windows (ConfigMgr's "run as 32-bit process" option). ARM64 Windows runs the x86 exe.
set "ARCH="
if /i "%PROCESSOR_ARCHITECTURE%"=="x86" set "ARCH=i686"
if /i "%PROCESSOR_ARCHITECTURE%"=="AMD64" set "ARCH=x86_64"
if /i "%PROCESSOR_ARCHITEW6432%"=="AMD64" set "ARCH=x86_64"
if /i "%PROCESSOR_ARCHITECTURE%"=="ARM64" set "ARCH=i686"
if /i "%PROCESSOR_ARCHITEW6432%"=="ARM64" set "ARCH=i686"
if not defined ARCH (
    echo error: unsupported processor architecture "%PROCESSOR_ARCHITECTURE%"
    exit /b 1
)
if not exist "%PKG%%ARCH%\tlsgate-collector.exe" (
    echo error: the package has no %ARCH%\tlsgate-collector.exe
    exit /b 1
)
if not exist "%PKG%collector.json" (
    echo error: the package has no collector.json
    exit /b 1
)
if not exist "%PKG%ca.pem" (
    echo error: the package has no ca.pem
    exit /b 1
)

rem The 64-bit Program Files also from a 32-bit cmd.
set "PF=%ProgramFiles%"
if defined ProgramW6432 set "PF=%ProgramW6432%"
set "DEST=%PF%\tlsgate"
set "EXE=%DEST%\tlsgate-collector.exe"
echo architecture %ARCH%, program folder %DEST%, data folder %DATA%

rem The host's name as the certificate names it: Hostname.Domain of the TCP/IP settings.
set "HN="
set "DN="
set "TCPIP=HKLM\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters"
for /f "tokens=2,*" %%a in ('reg query "%TCPIP%" /v Hostname 2^>nul ^| find /i "REG_SZ"') do set "HN=%%b"
for /f "tokens=2,*" %%a in ('reg query "%TCPIP%" /v Domain 2^>nul ^| find /i "REG_SZ"') do set "DN=%%b"
if not defined HN set "HN=%COMPUTERNAME%"
set "FQDN=%HN%"
if defined DN set "FQDN=%HN%.%DN%"
echo host %FQDN%

rem An upgrade: stop the running service before its exe is replaced.
if exist "%EXE%" (
    echo stopping the installed service, if any
    "%EXE%" service stop
)

if not exist "%DEST%\" mkdir "%DEST%"
copy /y "%PKG%%ARCH%\tlsgate-collector.exe" "%DEST%\tlsgate-collector.exe" >nul
if errorlevel 1 (
    echo error: cannot copy tlsgate-collector.exe to %DEST%
    exit /b 1
)
if exist "%PKG%%ARCH%\LICENSES\" xcopy "%PKG%%ARCH%\LICENSES" "%DEST%\LICENSES\" /e /i /y /q >nul

rem Close the data folder to SYSTEM and Administrators before a key lands in it; "service
rem install" then sets the final ACLs (and the service's read access) and checks them.
icacls "%DATA%" /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F >nul
if errorlevel 1 echo warning: icacls could not restrict %DATA% yet; service install will

copy /y "%PKG%collector.json" "%DATA%\collector.json" >nul
if errorlevel 1 (
    echo error: cannot copy collector.json to %DATA%
    exit /b 1
)
copy /y "%PKG%ca.pem" "%DATA%\ca.pem" >nul
if errorlevel 1 (
    echo error: cannot copy ca.pem to %DATA%
    exit /b 1
)
if exist "%PKG%site.secret" (
    copy /y "%PKG%site.secret" "%DATA%\site.secret" >nul
    if errorlevel 1 (
        echo error: cannot copy site.secret to %DATA%
        exit /b 1
    )
    echo enrollment: the collector makes its own key and enrolls as %FQDN% at start
    goto :install
)
if exist "%PKG%certs\%FQDN%.pem" (
    echo certificate and key from the package: certs\%FQDN%.pem
    copy /y "%PKG%certs\%FQDN%.pem" "%DATA%\host.pem" >nul
    copy /y "%PKG%certs\%FQDN%.key" "%DATA%\host.key" >nul
)
if not exist "%DATA%\host.pem" (
    echo error: no certificate for %FQDN%: put host.pem and host.key in %DATA% first
    exit /b 1
)
if not exist "%DATA%\host.key" (
    echo error: no key for %FQDN%: put host.key next to %DATA%\host.pem
    exit /b 1
)

:install
"%EXE%" service install --config "%DATA%\collector.json"
set "RC=%ERRORLEVEL%"
if not "%RC%"=="0" (
    echo error: service install failed with exit %RC%
    exit /b %RC%
)
"%EXE%" service start
set "RC=%ERRORLEVEL%"
if not "%RC%"=="0" (
    echo error: service start failed with exit %RC%; see %DATA%\logs\collector.log
    exit /b %RC%
)
echo installed
exit /b 0
